package slack

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/custos-pam/custos/broker"
)

// Action and callback IDs. They are the contract between the messages the
// broker posts and the interactions it accepts.
const (
	actionApprove = "custos_approve"
	actionDeny    = "custos_deny"
	actionOpen    = "custos_open"
	callbackDeny  = "custos_deny"
	blockReason   = "reason"
	inputReason   = "reason"
	blockActions  = "custos_actions"
	maxReasonLen  = 500
)

// message is what one request looks like in Slack, independent of where it
// is posted.
type message struct {
	Req   broker.Request
	Grant *broker.Grant
	// ApproveInSlack false replaces the buttons with a link to the web UI.
	ApproveInSlack bool
	// Signature is set when deciding is an electronic signature: the link
	// reads "Sign in Custos".
	Signature bool
	// RequestURL links to the request in the web UI; "" for none.
	RequestURL string
	// TicketURL is the slack.ticket_url template with {ticket}.
	TicketURL string
	// SlackID returns a user's Slack ID, or "".
	SlackID func(user string) string
}

// render returns the message's notification text and blocks.
func (m message) render() (string, []slack.Block) {
	r := m.Req
	title, durLabel, dur := "Access request: ", "*Duration*\n", formatDuration(r.Duration)
	if r.IsExtension() {
		title, durLabel, dur = "Extension request: ", "*Extension*\n", "+"+formatDuration(r.Duration)
	}
	header := slack.NewHeaderBlock(plain(clip(title+r.Target+" / "+r.Role, 150)), slack.HeaderBlockOptionBlockID("custos_header"))
	fields := []*slack.TextBlockObject{
		mrkdwn("*Requester*\n" + m.who(r.User)),
		mrkdwn("*Target*\n" + escape(r.Target)),
		mrkdwn("*Role*\n" + escape(r.Role)),
		mrkdwn(durLabel + dur),
		mrkdwn("*Ticket*\n" + m.ticket()),
		mrkdwn("*Request*\n" + m.requestRef()),
		mrkdwn("*Approvals*\n" + approvalsSoFar(r)),
	}
	if r.State == broker.RequestPending {
		fields = append(fields, mrkdwn("*Expires*\n"+slackDate(r.ExpiresAt)))
	} else {
		fields = append(fields, mrkdwn("*Decided*\n"+slackDate(r.DecidedAt)))
	}
	blocks := []slack.Block{
		header,
		slack.NewSectionBlock(nil, fields, nil, slack.SectionBlockOptionBlockID("custos_summary")),
	}
	if r.IsExtension() {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(extensionLine(r)), nil, nil, slack.SectionBlockOptionBlockID("custos_extension")))
	}
	reason := r.Reason
	if reason == "" {
		reason = "(none given)"
	}
	blocks = append(blocks, slack.NewSectionBlock(mrkdwn(clip("*Reason*\n"+quote(escape(reason)), 3000)), nil, nil, slack.SectionBlockOptionBlockID("custos_reason")))
	if votes := m.votes(); votes != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(clip(votes, 3000)), nil, nil, slack.SectionBlockOptionBlockID("custos_votes")))
	}
	blocks = append(blocks, slack.NewSectionBlock(mrkdwn(clip(m.status(), 3000)), nil, nil, slack.SectionBlockOptionBlockID("custos_status")))
	if r.State == broker.RequestPending {
		blocks = append(blocks, m.actions()...)
	}
	return clip(m.fallback(), 3000), blocks
}

func (m message) actions() []slack.Block {
	r := m.Req
	if !m.ApproveInSlack {
		note, label := "This target cannot be approved from Slack: sign in to Custos with your second factor to decide.", "Review in Custos"
		if m.Signature {
			note, label = "Approving or denying "+escape(r.Role)+" on "+escape(r.Target)+" is an electronic signature: sign in Custos, re-enter your password and second factor, and choose its meaning.", "Sign in Custos"
		}
		if m.RequestURL == "" {
			return []slack.Block{slack.NewContextBlock("custos_web_only", mrkdwn(note+" `custos approve "+r.ID+" --meaning …`"))}
		}
		open := slack.NewButtonBlockElement(actionOpen, r.ID, plain(label)).WithURL(m.RequestURL).WithStyle(slack.StylePrimary)
		return []slack.Block{
			slack.NewActionBlock(blockActions, open),
			slack.NewContextBlock("custos_web_only", mrkdwn(note)),
		}
	}
	ask := fmt.Sprintf("Give *%s* *%s* on *%s* for %s?", escape(r.User), escape(r.Role), escape(r.Target), formatDuration(r.Duration))
	if r.IsExtension() {
		ask = fmt.Sprintf("Extend *%s*'s grant %s (*%s* on *%s*) by %s, to %s?", escape(r.User), r.Extends, escape(r.Role),
			escape(r.Target), formatDuration(r.Duration), clockUTC(r.GrantEndsAt.Add(r.Duration)))
	}
	confirm := slack.NewConfirmationBlockObject(plain("Approve access?"), mrkdwn(clip(ask, 300)), plain("Approve"), plain("Cancel"))
	approve := slack.NewButtonBlockElement(actionApprove, r.ID, plain("Approve")).WithStyle(slack.StylePrimary).WithConfirm(confirm)
	deny := slack.NewButtonBlockElement(actionDeny, r.ID, plain("Deny")).WithStyle(slack.StyleDanger)
	elems := []slack.BlockElement{approve, deny}
	if m.RequestURL != "" {
		elems = append(elems, slack.NewButtonBlockElement(actionOpen, r.ID, plain("Open in Custos")).WithURL(m.RequestURL))
	}
	return []slack.Block{slack.NewActionBlock(blockActions, elems...)}
}

// votes lists who approved and denied, and when.
func (m message) votes() string {
	var lines []string
	for _, a := range m.Req.Approvals {
		lines = append(lines, fmt.Sprintf(":white_check_mark: Approved by %s %s", m.who(a.By), slackDate(a.At)))
	}
	for _, d := range m.Req.Denials {
		line := fmt.Sprintf(":no_entry_sign: Denied by %s %s", m.who(d.By), slackDate(d.At))
		if d.Comment != "" {
			line += ": " + escape(d.Comment)
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// status states where the request stands, in words that are true whatever
// happens next.
func (m message) status() string {
	r := m.Req
	switch r.State {
	case broker.RequestPending:
		need := max(r.Required-len(r.Approvals), 0)
		return fmt.Sprintf(":hourglass_flowing_sand: *Pending*: waiting for %d more %s.", need, plural(need, "approval", "approvals"))
	case broker.RequestApproved:
		g := m.Grant
		switch {
		case g == nil:
			return ":white_check_mark: *Approved*."
		case g.State == broker.GrantRevoked:
			s := fmt.Sprintf(":no_entry: *Approved*, then *revoked* by %s %s", m.who(g.RevokedBy), slackDate(g.RevokedAt))
			if g.RevokeReason != "" {
				s += ": " + escape(g.RevokeReason)
			}
			return s
		case g.State == broker.GrantExpired:
			return fmt.Sprintf(":white_check_mark: *Approved*. Access ended %s.", slackDate(g.EndsAt))
		case r.IsExtension():
			return fmt.Sprintf(":white_check_mark: *Approved*. Grant %s extended until %s.", g.ID, slackDate(g.EndsAt))
		default:
			return fmt.Sprintf(":white_check_mark: *Approved*. Access granted until %s.", slackDate(g.EndsAt))
		}
	case broker.RequestDenied:
		if n := len(r.Denials); n > 0 {
			d := r.Denials[n-1]
			s := fmt.Sprintf(":no_entry_sign: *Denied* by %s", m.who(d.By))
			if d.Comment != "" {
				s += ": " + escape(d.Comment)
			}
			return s
		}
		return ":no_entry_sign: *Denied*."
	case broker.RequestExpired:
		return fmt.Sprintf(":hourglass: *Expired* %s with %s.", slackDate(r.DecidedAt), approvalsSoFar(r))
	case broker.RequestCancelled:
		return fmt.Sprintf(":leftwards_arrow_with_hook: *Cancelled* by %s.", m.who(r.User))
	default:
		return "*" + escape(string(r.State)) + "*"
	}
}

// fallback is the plain notification text shown where blocks are not.
func (m message) fallback() string {
	r := m.Req
	if r.IsExtension() {
		return fmt.Sprintf("%s asks for an %s (%s on %s, %s): %s, %s", escape(r.User), extensionLine(r), escape(r.Role), escape(r.Target),
			r.ID, r.State, approvalsSoFar(r))
	}
	return fmt.Sprintf("%s requests %s on %s for %s (%s): %s, %s", escape(r.User), escape(r.Role), escape(r.Target),
		formatDuration(r.Duration), r.ID, r.State, approvalsSoFar(r))
}

// who names a Custos user, with a Slack mention when their Slack ID is known.
func (m message) who(user string) string {
	if user == "" {
		return "someone"
	}
	if m.SlackID != nil {
		if id := m.SlackID(user); id != "" {
			return fmt.Sprintf("*%s* (<@%s>)", escape(user), id)
		}
	}
	return "*" + escape(user) + "*"
}

func (m message) ticket() string {
	t := clip(m.Req.Ticket, 200)
	switch {
	case t == "":
		return "—"
	case m.TicketURL != "" && strings.Contains(m.TicketURL, "{ticket}"):
		u := strings.ReplaceAll(m.TicketURL, "{ticket}", urlEscapePathSegment(t))
		return "<" + escapeLinkURL(u) + "|" + escapeLinkText(t) + ">"
	default:
		return escape(t)
	}
}

func (m message) requestRef() string {
	if m.RequestURL != "" {
		return "<" + escapeLinkURL(m.RequestURL) + "|" + m.Req.ID + ">"
	}
	return "`" + m.Req.ID + "`"
}

// fingerprint identifies what a message shows, so the broker knows whether
// a message is current without asking Slack.
func fingerprint(r broker.Request, g *broker.Grant) string {
	fp := fmt.Sprintf("%s|%d|%d", r.State, len(r.Approvals), len(r.Denials))
	if g != nil {
		fp += "|" + string(g.State)
		if len(g.Extensions) > 0 {
			fp += "|" + strconv.FormatInt(g.EndsAt.Unix(), 10)
		}
	}
	return fp
}

// extensionLine says what an extension request asks for, in the words
// approvers see: "extension of grant X to HH:MM UTC (+30m)".
func extensionLine(r broker.Request) string {
	return fmt.Sprintf("extension of grant %s to %s (+%s; it ended at %s)", r.Extends, clockUTC(r.GrantEndsAt.Add(r.Duration)),
		formatDuration(r.Duration), clockUTC(r.GrantEndsAt))
}

// clockUTC is a time of day for messages: "14:05 UTC".
func clockUTC(t time.Time) string { return t.UTC().Format("15:04") + " UTC" }

// endingEvent prefixes the notify event of a grant's ending notice; the
// grant's end (Unix seconds) follows.
const endingEvent = "ending:"

// endingText is the holder's DM shortly before their grant ends.
func endingText(r broker.Request, g *broker.Grant) string {
	if g == nil {
		return fmt.Sprintf(":hourglass_flowing_sand: The grant of your request %s ends soon.", r.ID)
	}
	return fmt.Sprintf(":hourglass_flowing_sand: Your grant %s for *%s* on *%s* ends at %s (%s). For more time, ask before then: `custos extend %s --for 30m --reason \"...\"`",
		g.ID, escape(g.Role), escape(g.Target), clockUTC(g.EndsAt), slackDate(g.EndsAt), g.ID)
}

// requesterText is the requester's DM when their request was decided, or
// when its grant ends soon.
func requesterText(r broker.Request, g *broker.Grant, event string) string {
	if strings.HasPrefix(event, endingEvent) {
		return endingText(r, g)
	}
	what := fmt.Sprintf("your request %s for *%s* on *%s*", r.ID, escape(r.Role), escape(r.Target))
	if r.IsExtension() {
		what = fmt.Sprintf("your extension %s of grant %s (*%s* on *%s*)", r.ID, r.Extends, escape(r.Role), escape(r.Target))
	}
	switch event {
	case "approved":
		by := make([]string, len(r.Approvals))
		for i, a := range r.Approvals {
			by[i] = escape(a.By)
		}
		s := fmt.Sprintf(":white_check_mark: Approved: %s by %s.", what, strings.Join(by, ", "))
		if g != nil {
			s += " Access until " + slackDate(g.EndsAt) + "."
		}
		return s
	case "denied":
		s := ":no_entry_sign: Denied: " + what
		if n := len(r.Denials); n > 0 {
			s += " by " + escape(r.Denials[n-1].By)
			if c := r.Denials[n-1].Comment; c != "" {
				s += ": " + escape(c)
			}
		}
		return s + "."
	case "expired":
		return fmt.Sprintf(":hourglass: Expired: %s got %s before it expired.", what, approvalsSoFar(r))
	case "revoked":
		s := ":no_entry: Revoked: access from " + what
		if g != nil {
			s += " was revoked by " + escape(g.RevokedBy)
			if g.RevokeReason != "" {
				s += ": " + escape(g.RevokeReason)
			}
		}
		return s + "."
	}
	return what + ": " + string(r.State)
}

// reminderText asks the approvers who have not voted to decide.
func reminderText(r broker.Request, mentions []string) string {
	need := max(r.Required-len(r.Approvals), 0)
	s := fmt.Sprintf(":bell: Reminder: %s's request %s for *%s* on *%s* expires %s and needs %d more %s.",
		escape(r.User), r.ID, escape(r.Role), escape(r.Target), slackDate(r.ExpiresAt), need, plural(need, "approval", "approvals"))
	if len(mentions) > 0 {
		s += " " + strings.Join(mentions, " ")
	}
	return s
}

// denyModal asks for the reason of a denial.
func denyModal(r broker.Request) slack.ModalViewRequest {
	input := slack.NewPlainTextInputBlockElement(plain("Shown to the requester and kept in the audit log"), inputReason)
	input.Multiline = true
	input.MaxLength = maxReasonLen
	return slack.ModalViewRequest{
		Type:       slack.VTModal,
		Title:      plain("Deny request"),
		Submit:     plain("Deny"),
		Close:      plain("Cancel"),
		CallbackID: callbackDeny,
		// The request ID comes back in the signed view_submission.
		PrivateMetadata: r.ID,
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(mrkdwn(clip(fmt.Sprintf("Deny *%s*'s request %s for *%s* on *%s* (%s)?",
				escape(r.User), r.ID, escape(r.Role), escape(r.Target), formatDuration(r.Duration)), 3000)), nil, nil),
			slack.NewInputBlock(blockReason, plain("Reason"), nil, input),
		}},
	}
}

func approvalsSoFar(r broker.Request) string {
	return fmt.Sprintf("%d of %d", len(r.Approvals), max(r.Required, 1))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// slackDate renders an instant in each reader's own time zone, with a UTC
// fallback for clients that cannot.
func slackDate(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return fmt.Sprintf("<!date^%d^{date_short_pretty} at {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

// formatDuration prints 1h, 1h30m or 45m rather than 1h0m0s.
func formatDuration(d time.Duration) string {
	if d <= 0 {
		return "0m"
	}
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return strconv.Itoa(m) + "m"
	case m == 0:
		return strconv.Itoa(h) + "h"
	default:
		return fmt.Sprintf("%dh%dm", h, m)
	}
}

// escape makes user text safe in mrkdwn: no links, mentions or
// @channel broadcasts can be smuggled in.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func escapeLinkText(s string) string { return strings.ReplaceAll(escape(s), "|", "¦") }

func escapeLinkURL(s string) string {
	return strings.NewReplacer("<", "%3C", ">", "%3E", "|", "%7C", " ", "%20").Replace(s)
}

func urlEscapePathSegment(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func quote(s string) string {
	return "> " + strings.ReplaceAll(s, "\n", "\n> ")
}

// clip cuts s to at most n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}
func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}
