package slack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/custos-pam/custos/broker"
)

// metadataType tags the broker's messages so a retry can find a message an
// earlier, uncertain attempt already posted.
const metadataType = "custos_outbox"

// deliver makes one attempt at an item.
func (s *Slack) deliver(ctx context.Context, it *item) result {
	switch it.Kind {
	case kindPost:
		return s.deliverPost(ctx, it)
	case kindUpdate:
		return s.deliverUpdate(ctx, it)
	case kindNotify:
		return s.deliverNotify(ctx, it)
	case kindRemind:
		return s.deliverRemind(ctx, it)
	case kindEphemeral:
		_, err := s.api.PostEphemeralContext(ctx, it.Channel, it.User, slack.MsgOptionText(it.Text, false))
		return result{err: err}
	case kindNotice:
		_, _, err := s.postOnce(ctx, it, it.Channel, "", noticeOptions(it)...)
		return result{err: err}
	}
	return result{err: permanent("unknown item kind " + it.Kind)}
}

// noticeOptions is a security notice's content: its text and, when it has
// a link, the text again as a section with a button to the web UI under
// it (a link button: a click opens the page, Slack only reports it).
func noticeOptions(it *item) []slack.MsgOption {
	opts := []slack.MsgOption{slack.MsgOptionText(it.Text, false)}
	if it.LinkURL == "" && it.Hold == "" {
		return opts
	}
	var buttons []slack.BlockElement
	if it.Hold != "" {
		buttons = holdButtons(it)
	}
	if it.LinkURL != "" {
		open := slack.NewButtonBlockElement(actionOpen, "", plain(it.LinkText)).WithURL(it.LinkURL)
		if it.Hold == "" {
			open = open.WithStyle(slack.StylePrimary)
		}
		buttons = append(buttons, open)
	}
	return append(opts, slack.MsgOptionBlocks(
		slack.NewSectionBlock(mrkdwn(clip(it.Text, 3000)), nil, nil, slack.SectionBlockOptionBlockID("custos_notice")),
		slack.NewActionBlock(blockActions, buttons...)))
}

// view loads a request and its grant and renders its message.
func (s *Slack) view(ctx context.Context, id string) (broker.Request, *broker.Grant, message, error) {
	r, err := s.access.GetRequest(ctx, id)
	if err != nil {
		return r, nil, message{}, err
	}
	var g *broker.Grant
	if r.GrantID != "" {
		gr, err := s.access.GetGrant(ctx, r.GrantID)
		if err != nil {
			return r, nil, message{}, err
		}
		g = &gr
	}
	m := message{Req: r, Grant: g, ApproveInSlack: s.approveInSlack(r.Target, r.Role),
		Signature: s.signatureRequired(r.Target, r.Role), RequestURL: s.requestURL(r.ID),
		TicketURL: s.settings().cfg.TicketURL, SlackID: s.slackIDOf}
	return r, g, m, nil
}

func (s *Slack) deliverPost(ctx context.Context, it *item) result {
	st, err := s.loadRequestState(ctx, it.Request)
	if err != nil {
		return result{err: err}
	}
	if _, ok := st.message(it.Dest); ok {
		return result{}
	}
	r, g, m, err := s.view(ctx, it.Request)
	if err != nil {
		return result{err: err}
	}
	if strings.HasPrefix(it.Dest, "user:") && r.State != broker.RequestPending {
		// A DM asking an approver to decide is pointless once decided.
		return result{}
	}
	channel, err := s.destChannel(ctx, it.Dest)
	if err != nil {
		return result{err: err}
	}
	text, blocks := m.render()
	ts, adopted, err := s.postOnce(ctx, it, channel, "", slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return result{err: err}
	}
	shown := fingerprint(r, g)
	if adopted {
		// Rendered by the earlier attempt, maybe from an older state: the
		// update that recordEffects queues brings it up to date.
		shown = ""
	}
	return result{posted: []posted{{Dest: it.Dest, Channel: channel, TS: ts, Shown: shown}}}
}

func (s *Slack) deliverUpdate(ctx context.Context, it *item) result {
	st, err := s.loadRequestState(ctx, it.Request)
	if err != nil || len(st.Messages) == 0 {
		return result{err: err}
	}
	r, g, m, err := s.view(ctx, it.Request)
	if err != nil {
		return result{err: err}
	}
	fp := fingerprint(r, g)
	text, blocks := m.render()
	var res result
	for _, p := range st.Messages {
		if p.Shown == fp {
			continue
		}
		_, _, _, err := s.api.UpdateMessageContext(ctx, p.Channel, p.TS, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
		switch code := slackCode(err); {
		case err == nil:
			p.Shown = fp
			res.posted = append(res.posted, p)
		case code == "message_not_found" || code == "cant_update_message" || code == "channel_not_found":
			// Deleted by someone: nothing left to keep current.
			s.log.Warn("slack message gone; no longer updated", "request", r.ID, "dest", p.Dest, "err", code)
			res.gone = append(res.gone, p.Dest)
		default:
			res.err = err
			return res
		}
	}
	return res
}

func (s *Slack) deliverNotify(ctx context.Context, it *item) result {
	st, err := s.loadRequestState(ctx, it.Request)
	if err != nil {
		return result{err: err}
	}
	if slices.Contains(st.Notified, it.Event) {
		return result{}
	}
	r, g, _, err := s.view(ctx, it.Request)
	if err != nil {
		return result{err: err}
	}
	uid := s.slackIDOf(r.User)
	if uid == "" {
		return result{notified: it.Event}
	}
	channel, err := s.destChannel(ctx, "user:"+uid)
	if err != nil {
		return result{err: err}
	}
	text := requesterText(r, g, it.Event)
	opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if u := s.requestURL(r.ID); u != "" {
		opts = append(opts, slack.MsgOptionBlocks(
			slack.NewSectionBlock(mrkdwn(clip(text, 3000)), nil, nil),
			slack.NewContextBlock("", mrkdwn("<"+escapeLinkURL(u)+"|Open in Custos>"))))
	}
	if _, _, err := s.postOnce(ctx, it, channel, "", opts...); err != nil {
		return result{err: err}
	}
	return result{notified: it.Event}
}

func (s *Slack) deliverRemind(ctx context.Context, it *item) result {
	st, err := s.loadRequestState(ctx, it.Request)
	if err != nil {
		return result{err: err}
	}
	p, ok := st.message(it.Dest)
	if !ok || slices.Contains(st.RemindedDests, it.Dest) {
		return result{}
	}
	r, err := s.access.GetRequest(ctx, it.Request)
	if err != nil {
		return result{err: err}
	}
	if r.State != broker.RequestPending {
		return result{reminded: it.Dest}
	}
	undecided := s.undecided(r)
	var mentions []string
	if uid, ok := strings.CutPrefix(it.Dest, "user:"); ok {
		// An approver's own copy: remind only one who has not voted.
		if id, ok := s.dir.BySlackID(uid); !ok || !slices.Contains(undecided, id.Name) {
			return result{reminded: it.Dest}
		}
	} else {
		for _, u := range undecided {
			if id := s.slackIDOf(u); id != "" {
				mentions = append(mentions, "<@"+id+">")
			}
		}
	}
	if _, _, err := s.postOnce(ctx, it, p.Channel, p.TS, slack.MsgOptionText(reminderText(r, mentions), false), slack.MsgOptionTS(p.TS)); err != nil {
		return result{err: err}
	}
	return result{reminded: it.Dest}
}

// postOnce posts a message tagged with the item's ID. When an earlier
// attempt may have reached Slack it first looks for that message and
// returns its ts (adopted) instead of posting again.
func (s *Slack) postOnce(ctx context.Context, it *item, channel, thread string, opts ...slack.MsgOption) (ts string, adopted bool, err error) {
	if it.Uncertain {
		ts, found, err := s.findPosted(ctx, channel, thread, it)
		if err != nil {
			return "", false, fmt.Errorf("look for earlier attempt: %w", err)
		}
		if found {
			s.log.Info("slack message from an earlier attempt found; not posting again", "item", it.ID)
			return ts, true, nil
		}
	}
	opts = append(opts, slack.MsgOptionMetadata(slack.SlackMetadata{EventType: metadataType,
		EventPayload: map[string]any{"item": it.ID}}), slack.MsgOptionDisableLinkUnfurl())
	_, ts, err = s.api.PostMessageContext(ctx, channel, opts...)
	return ts, false, err
}

// findPosted searches the channel (or thread) for a message carrying the
// item's metadata, from a little before the item's first attempt.
func (s *Slack) findPosted(ctx context.Context, channel, thread string, it *item) (string, bool, error) {
	oldest := fmt.Sprintf("%d.000000", it.FirstTry.Add(-5*time.Minute).Unix())
	cursor := ""
	for range 10 {
		var (
			msgs    []slack.Message
			more    bool
			nextCur string
		)
		if thread == "" {
			h, err := s.api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
				ChannelID: channel, Oldest: oldest, Limit: 200, Cursor: cursor, IncludeAllMetadata: true, Inclusive: true})
			if err != nil {
				return "", false, err
			}
			msgs, more, nextCur = h.Messages, h.HasMore, h.ResponseMetaData.NextCursor
		} else {
			var err error
			msgs, more, nextCur, err = s.api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{
				ChannelID: channel, Timestamp: thread, Oldest: oldest, Limit: 200, Cursor: cursor, IncludeAllMetadata: true, Inclusive: true})
			if err != nil {
				return "", false, err
			}
		}
		for _, m := range msgs {
			if m.Metadata.EventType == metadataType && m.Metadata.EventPayload["item"] == it.ID {
				return m.Timestamp, true, nil
			}
		}
		if !more || nextCur == "" {
			return "", false, nil
		}
		cursor = nextCur
	}
	return "", false, nil
}

// destChannel resolves a destination to a channel ID, opening the DM for a
// user.
func (s *Slack) destChannel(ctx context.Context, dest string) (string, error) {
	if ch, ok := strings.CutPrefix(dest, "channel:"); ok {
		return ch, nil
	}
	uid, ok := strings.CutPrefix(dest, "user:")
	if !ok {
		return "", permanent("bad destination " + dest)
	}
	ch, _, _, err := s.api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{uid}, ReturnIM: true})
	if err != nil {
		return "", err
	}
	if ch == nil || ch.ID == "" {
		return "", errors.New("conversations.open returned no channel")
	}
	return ch.ID, nil
}

// permanentError is a delivery that can never succeed.
type permanentError string

func (e permanentError) Error() string { return string(e) }

func permanent(msg string) error { return permanentError(msg) }

// fatalCodes are Slack errors that retrying cannot fix.
var fatalCodes = map[string]bool{
	"invalid_blocks": true, "invalid_blocks_format": true, "msg_too_long": true, "no_text": true,
	"invalid_arguments": true, "invalid_metadata_format": true, "invalid_metadata_schema": true,
	"metadata_too_large": true, "too_many_attachments": true, "cannot_dm_bot": true, "user_not_found": true,
}

// classify says how to retry after err: after Retry-After for a 429;
// uncertain when the call may have taken effect; fatal when it never will.
func classify(err error) (retryAfter time.Duration, uncertain, fatal bool) {
	if err == nil {
		return 0, false, false
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return max(rl.RetryAfter, time.Second), false, false
	}
	var pe permanentError
	if errors.As(err, &pe) {
		return 0, false, true
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return 0, sc.Code >= 500, false
	}
	if code := slackCode(err); code != "" {
		return 0, false, fatalCodes[code]
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return 0, false, false
	}
	// A timeout or broken connection after the request was written.
	return 0, true, false
}

// slackCode returns the error code of an ok:false answer, or "".
func slackCode(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	return ""
}

// errText describes err without secrets: Slack error codes, HTTP statuses
// and network errors carry none.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return clip(err.Error(), 300)
}
