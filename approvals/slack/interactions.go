package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/policy"
)

const (
	// maxInteractionBody bounds an interaction request; Slack's include
	// the whole message, well under this.
	maxInteractionBody = 1 << 20
	seenKey            = "slack/seen"
	// seenFor is how long delivery keys are kept. Signed HTTP deliveries
	// older than five minutes are refused anyway; Socket Mode retries come
	// within minutes.
	seenFor = 24 * time.Hour
)

// reply is the answer to an interaction: an HTTP status, and a JSON body
// (the Socket Mode ack payload) for modal submissions.
type reply struct {
	status int
	body   any
}

var ok = reply{status: http.StatusOK}

// InteractionHandler serves POST /slack/interactions: it verifies Slack's
// signature and timestamp before anything else, then hands the payload to
// the handler Socket Mode uses too.
func (s *Slack) InteractionHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(audit.WithSource(r.Context(), audit.SourceAddr(r.RemoteAddr)))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInteractionBody))
		if err != nil {
			http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		if code := s.verify(r.Header, body); code != "" {
			s.refused(r.Context(), audit.Entry{Actor: "slack:unverified", Action: "slack.reject", Outcome: broker.OutcomeDenied,
				Reason: verifyReasons[code], Details: map[string]any{"transport": "http", "code": code, "remote_addr": r.RemoteAddr}})
			s.log.Warn("slack interaction refused", "code", code, "remote_addr", r.RemoteAddr)
			http.Error(w, verifyReasons[code], http.StatusUnauthorized)
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil || form.Get("payload") == "" {
			s.refused(r.Context(), audit.Entry{Actor: "slack", Action: "slack.reject", Outcome: broker.OutcomeDenied,
				Reason: "signed request without an interaction payload", Details: map[string]any{"transport": "http", "code": "malformed"}})
			http.Error(w, "no interaction payload", http.StatusBadRequest)
			return
		}
		rep := s.handle(r.Context(), "http", []byte(form.Get("payload")))
		if rep.body == nil {
			w.WriteHeader(rep.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_ = json.NewEncoder(w).Encode(rep.body)
	})
}

var verifyReasons = map[string]string{
	"missing_signature": "missing Slack signature headers",
	"stale_timestamp":   "request timestamp outside the five-minute window",
	"bad_signature":     "invalid Slack signature",
}

// verify checks X-Slack-Signature (HMAC-SHA256 over v0:timestamp:body,
// compared in constant time) and that X-Slack-Request-Timestamp is within
// five minutes of now, either way. It returns "" or a refusal code.
func (s *Slack) verify(h http.Header, body []byte) string {
	sv, err := slack.NewSecretsVerifier(h, s.secret)
	switch {
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return "stale_timestamp"
	case errors.Is(err, slack.ErrMissingHeaders):
		return "missing_signature"
	case err != nil:
		return "bad_signature"
	}
	if _, err := sv.Write(body); err != nil || sv.Ensure() != nil {
		return "bad_signature"
	}
	return ""
}

// handle acts on an authenticated interaction payload, from either
// transport.
func (s *Slack) handle(ctx context.Context, transport string, raw []byte) reply {
	in, err := parseInteraction(raw)
	if err != nil {
		s.refused(ctx, audit.Entry{Actor: "slack", Action: "slack.reject", Outcome: broker.OutcomeDenied,
			Reason: "malformed interaction payload", Details: map[string]any{"transport": transport, "code": "malformed"}})
		return reply{status: http.StatusBadRequest}
	}
	in.Transport = transport
	switch in.Type {
	case string(slack.InteractionTypeBlockActions):
		return s.onBlockAction(ctx, in)
	case string(slack.InteractionTypeViewSubmission):
		return s.onViewSubmission(ctx, in)
	}
	return ok
}

func (s *Slack) onBlockAction(ctx context.Context, in interaction) reply {
	switch in.ActionID {
	case actionOpen:
		// A link button: Slack opens the URL and tells us; nothing to do.
		return ok
	case actionHoldApprove, actionHoldDeny:
		return s.onHoldAction(ctx, in)
	case actionApprove, actionDeny:
	default:
		s.reject(ctx, in, "", "unknown_action", "unknown action")
		return ok
	}
	if rep, done := s.firstDelivery(ctx, in); done {
		return rep
	}
	who, req, refused := s.checkClick(ctx, in)
	if refused != "" {
		s.tell(ctx, in, refused)
		return ok
	}
	if in.ActionID == actionApprove {
		if _, _, err := s.access.Decide(ctx, who.Name, req.ID, access.Decision{Approve: true, Via: "slack"}); err != nil {
			s.tell(ctx, in, refusalText(err))
		}
		return ok
	}
	// Deny asks for a reason first. Refuse at once what the submission
	// would be refused for, rather than ask for a reason in vain.
	// The same rule the API applies (access.CheckDecide).
	switch code := broker.CodeOf(s.access.CheckDecide(who.Name, req)); {
	case code == policy.CodeSelfApproval:
		s.reject(ctx, in, who.Name, code, "requester tried to deny their own request")
		s.tell(ctx, in, "You cannot approve or deny your own request. To withdraw it, cancel it in Custos.")
		return ok
	case code != "":
		s.reject(ctx, in, who.Name, code, who.Name+" is not an approver for "+req.Target+"/"+req.Role)
		s.tell(ctx, in, fmt.Sprintf("You are not an approver for %s/%s.", req.Target, req.Role))
		return ok
	case req.State != broker.RequestPending:
		s.tell(ctx, in, fmt.Sprintf("Request %s is already %s.", req.ID, req.State))
		return ok
	}
	if _, err := s.api.OpenViewContext(ctx, in.TriggerID, denyModal(req)); err != nil {
		s.log.Warn("slack views.open failed", "request", req.ID, "err", errText(err))
		s.tell(ctx, in, fmt.Sprintf("Could not open the deny dialog (%s). Deny in Custos instead: custos deny %s", errText(err), req.ID))
	}
	return ok
}

func (s *Slack) onViewSubmission(ctx context.Context, in interaction) reply {
	if in.CallbackID != callbackDeny {
		return ok
	}
	if rep, done := s.firstDelivery(ctx, in); done {
		return rep
	}
	who, req, refused := s.checkClick(ctx, in)
	if refused != "" {
		return modalError(refused)
	}
	reason := strings.TrimSpace(in.Reason)
	if reason == "" {
		return modalError("A reason is required.")
	}
	if _, _, err := s.access.Decide(ctx, who.Name, req.ID, access.Decision{Approve: false, Comment: clip(reason, maxReasonLen), Via: "slack"}); err != nil {
		return modalError(refusalText(err))
	}
	return ok
}

// firstDelivery claims the interaction's delivery key. A key seen before
// is a retry or a replay: it is audited as slack.replay and acknowledged
// without acting on it (done is true).
func (s *Slack) firstDelivery(ctx context.Context, in interaction) (reply, bool) {
	replay := false
	now := s.now().UTC()
	err := s.store.Update(context.WithoutCancel(ctx), func(tx broker.Tx) error {
		var seen map[string]time.Time
		if err := getJSON(tx, seenKey, &seen); err != nil {
			return err
		}
		if seen == nil {
			seen = map[string]time.Time{}
		}
		if first, dup := seen[in.Key]; dup {
			replay = true
			_, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "slack:" + in.User, Action: "slack.replay", Target: in.requestID(),
				Outcome: broker.OutcomeDenied, Reason: "interaction delivered again; ignored",
				Details: s.details(in, map[string]any{"first_seen": first})})
			return err
		}
		for k, t := range seen {
			if now.Sub(t) > seenFor {
				delete(seen, k)
			}
		}
		seen[in.Key] = now
		return putJSON(tx, seenKey, seen)
	})
	switch {
	case err != nil:
		s.log.Error("slack replay check failed", "err", err)
		return reply{status: http.StatusInternalServerError}, true
	case replay:
		s.log.Warn("slack interaction replayed; ignored", "slack_user", in.User, "request", in.requestID())
		return ok, true
	}
	return reply{}, false
}

// checkClick maps the clicker to an identity and loads the request. On
// refusal it audits and returns the text to show the clicker.
func (s *Slack) checkClick(ctx context.Context, in interaction) (identity.Identity, broker.Request, string) {
	who, code, why := s.identify(ctx, in)
	if code != "" {
		s.reject(ctx, in, "", code, why)
		return who, broker.Request{}, refusalFor[code]
	}
	req, err := s.access.GetRequest(ctx, in.requestID())
	if err != nil {
		s.reject(ctx, in, who.Name, "unknown_request", "no such request")
		return who, req, "That request does not exist."
	}
	if s.signatureRequired(req.Target, req.Role) {
		s.reject(ctx, in, who.Name, "signature_required", req.Target+"/"+req.Role+" decisions are electronic signatures")
		msg := "Deciding " + req.Target + "/" + req.Role + " is an electronic signature: sign in Custos with your password and second factor and choose the meaning."
		if u := s.requestURL(req.ID); u != "" {
			msg += " " + u
		}
		return who, req, msg
	}
	if !s.approveInSlack(req.Target, req.Role) {
		s.reject(ctx, in, who.Name, "slack_approval_disabled", "target "+req.Target+" cannot be decided in Slack")
		msg := "Requests for " + req.Target + " cannot be decided in Slack: sign in to Custos with your second factor."
		if u := s.requestURL(req.ID); u != "" {
			msg += " " + u
		}
		return who, req, msg
	}
	return who, req, ""
}

var refusalFor = map[string]string{
	"wrong_team":     "This Slack workspace is not the one Custos is connected to.",
	"unmapped_user":  "Your Slack account is not linked to a Custos user, so your click was not counted.",
	"ambiguous_user": "Your Slack account does not map to exactly one Custos user, so your click was not counted.",
	"lookup_failed":  "Custos could not check your Slack account just now; your click was not counted. Try again.",
}

// identify maps the Slack user to exactly one identity: the user whose
// slack_id it is or, with match_email, the user whose email Slack's
// users.info reports (confirmed, for a live human account) and who has no
// other Slack ID configured. It returns a refusal code and reason instead.
func (s *Slack) identify(ctx context.Context, in interaction) (identity.Identity, string, string) {
	team, err := s.team(ctx)
	if err != nil {
		return identity.Identity{}, "lookup_failed", "auth.test failed: " + errText(err)
	}
	if in.Team != team {
		return identity.Identity{}, "wrong_team", "interaction from workspace " + in.Team + ", not " + team
	}
	if id, ok := s.dir.BySlackID(in.User); ok {
		return id, "", ""
	}
	if !s.settings().cfg.MatchEmail {
		return identity.Identity{}, "unmapped_user", "slack user " + in.User + " has no Custos identity"
	}
	u, err := s.api.GetUserInfoContext(ctx, in.User)
	if err != nil {
		return identity.Identity{}, "lookup_failed", "users.info failed: " + errText(err)
	}
	if u.Deleted || u.IsBot || !u.IsEmailConfirmed || u.Profile.Email == "" {
		return identity.Identity{}, "unmapped_user", "slack user " + in.User + " has no confirmed email of a live account"
	}
	id, ok := s.dir.ByEmail(u.Profile.Email)
	if !ok {
		return identity.Identity{}, "unmapped_user", "slack user " + in.User + " has no Custos identity"
	}
	if id.SlackID != "" && id.SlackID != in.User {
		return identity.Identity{}, "ambiguous_user", "email of slack user " + in.User + " belongs to " + id.Name + ", who is linked to another slack account"
	}
	return id, "", ""
}

// team returns the workspace the bot token belongs to, asking auth.test
// the first time.
func (s *Slack) team(ctx context.Context) (string, error) {
	s.mu.Lock()
	t := s.teamID
	s.mu.Unlock()
	if t != "" {
		return t, nil
	}
	res, err := s.api.AuthTestContext(ctx)
	if err != nil {
		return "", err
	}
	if res.TeamID == "" {
		return "", errors.New("auth.test returned no team")
	}
	s.mu.Lock()
	s.teamID = res.TeamID
	s.mu.Unlock()
	return res.TeamID, nil
}

// refused audits an interaction refused before anyone is identified
// (forged, stale or malformed), which anyone who can reach the endpoint
// can send, through the throttle: per source address (audit.Source; none
// over Socket Mode), the first few are records, the rest one summary.
// Refusals of an identified clicker go through reject, one record each.
func (s *Slack) refused(ctx context.Context, e audit.Entry) {
	if s.rejections == nil {
		s.auditEntry(ctx, e)
		return
	}
	if err := s.rejections.Record(ctx, audit.Source(ctx), e); err != nil {
		s.log.Error("audit append failed", "action", e.Action, "err", err)
	}
}

// reject audits a refused interaction.
func (s *Slack) reject(ctx context.Context, in interaction, actor, code, reason string) {
	if actor == "" {
		actor = "slack:" + in.User
	}
	s.auditEntry(ctx, audit.Entry{Actor: actor, Action: "slack.reject", Target: in.requestID(), Outcome: broker.OutcomeDenied,
		Reason: reason, Details: s.details(in, map[string]any{"code": code})})
	s.log.Warn("slack interaction refused", "code", code, "slack_user", in.User, "request", in.requestID())
}

func (s *Slack) details(in interaction, extra map[string]any) map[string]any {
	d := map[string]any{"transport": in.Transport, "slack_user": in.User, "team": in.Team, "type": in.Type, "request_id": in.requestID()}
	if in.ActionID != "" {
		d["action"] = in.ActionID
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// tell answers the clicker privately, in the channel they clicked in.
func (s *Slack) tell(ctx context.Context, in interaction, text string) {
	if in.Channel == "" {
		return
	}
	it := &item{ID: "ephemeral/" + broker.NewID("eph"), Kind: kindEphemeral, Channel: in.Channel, User: in.User, Text: text}
	if err := s.enqueue(context.WithoutCancel(ctx), nil, it); err != nil {
		s.log.Error("queue slack reply failed", "err", err)
	}
}

// refusalText is what the clicker sees when the access service refused a
// decision: its message when it is a policy refusal, never internal detail.
func refusalText(err error) string {
	if e, ok := broker.AsError(err); ok {
		return "Not counted: " + e.Message
	}
	return "Not counted: Custos could not record your decision. Try again, or use the web UI."
}

func modalError(text string) reply {
	return reply{status: http.StatusOK, body: map[string]any{
		"response_action": "errors",
		"errors":          map[string]string{blockReason: clip(text, 150)},
	}}
}
