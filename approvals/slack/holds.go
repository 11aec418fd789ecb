package slack

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/holds"
)

// Holds are the statements the PostgreSQL guardrails hold for approval
// (*holds.Store).
type Holds interface {
	Get(id string) (holds.Hold, bool)
	Decide(id, approver string, approve bool, reason string) (holds.Hold, error)
}

// HoldAccess looks up the facts access.Allowed decides a hold on
// (*access.Service).
type HoldAccess interface {
	HoldFacts(user, sessionUser, target, role string) access.Facts
}

// Action IDs of a held statement's buttons; the value is the hold ID.
const (
	actionHoldApprove = "custos_hold_approve"
	actionHoldDeny    = "custos_hold_deny"
)

// HoldNotice posts a held statement to the security channel like
// SecurityNoticeWithLink, with Approve and Deny buttons for the hold when
// the broker decides holds from Slack (Options.Holds). Approvers of the
// session's role decide with them; anyone else's click is refused.
func (s *Slack) HoldNotice(ctx context.Context, text, holdID string, l Link) error {
	cfg := s.settings().cfg
	ch := cfg.SecurityChannel
	if ch == "" {
		ch = cfg.Channel
	}
	if ch == "" {
		return errors.New("slack: hold notice: no security_channel or channel configured")
	}
	it := &item{ID: "notice/" + broker.NewID("ntc"), Kind: kindNotice, Channel: ch, Text: escape(text)}
	if s.holds != nil && s.holdAccess != nil {
		it.Hold = holdID
	}
	if s.publicURL != "" && l.Text != "" && strings.HasPrefix(l.Path, "/") {
		it.LinkText, it.LinkURL = clip(l.Text, 75), s.publicURL+l.Path
	}
	if err := s.enqueue(context.WithoutCancel(ctx), nil, it); err != nil {
		return fmt.Errorf("slack: hold notice: %w", err)
	}
	return nil
}

// holdButtons are a hold notice's buttons.
func holdButtons(it *item) []slack.BlockElement {
	return []slack.BlockElement{
		slack.NewButtonBlockElement(actionHoldApprove, it.Hold, plain("Approve (runs once)")).WithStyle(slack.StylePrimary),
		slack.NewButtonBlockElement(actionHoldDeny, it.Hold, plain("Deny")).WithStyle(slack.StyleDanger),
	}
}

// onHoldAction decides a held statement for the clicker, under the same
// rule as the API (access.DecideHold: an approver of the role, never the
// session's own user).
func (s *Slack) onHoldAction(ctx context.Context, in interaction) reply {
	if rep, done := s.firstDelivery(ctx, in); done {
		return rep
	}
	who, code, why := s.identify(ctx, in)
	if code != "" {
		s.reject(ctx, in, "", code, why)
		s.tell(ctx, in, refusalFor[code])
		return ok
	}
	if s.holds == nil || s.holdAccess == nil {
		s.reject(ctx, in, who.Name, "unknown_action", "held statements are not decided in Slack on this broker")
		s.tell(ctx, in, "Held statements are not decided in Slack on this broker: use custos holds.")
		return ok
	}
	h, found := s.holds.Get(in.Value)
	if !found {
		s.reject(ctx, in, who.Name, "unknown_hold", "no such hold")
		s.tell(ctx, in, "That held statement is no longer known.")
		return ok
	}
	if !s.approveInSlack(h.Target, h.Role) {
		s.reject(ctx, in, who.Name, "slack_approval_disabled", "target "+h.Target+" cannot be decided in Slack")
		s.tell(ctx, in, "Statements on "+h.Target+" cannot be decided in Slack: custos holds approve "+h.ID)
		return ok
	}
	f := s.holdAccess.HoldFacts(who.Name, h.User, h.Target, h.Role)
	if !access.Allowed(access.DecideHold, f) {
		code, msg := "not_approver", fmt.Sprintf("You are not an approver for %s/%s.", h.Target, h.Role)
		if f.Owner {
			code, msg = "self_approval", "You cannot decide a statement of your own session."
		}
		s.reject(ctx, in, who.Name, code, who.Name+" may not decide hold "+h.ID)
		s.tell(ctx, in, msg)
		return ok
	}
	approve := in.ActionID == actionHoldApprove
	got, err := s.holds.Decide(h.ID, who.Name, approve, "in Slack")
	if err != nil {
		s.tell(ctx, in, fmt.Sprintf("Held statement %s is already %s.", h.ID, got.State))
		return ok
	}
	if _, err := s.audit.Append(ctx, audit.Entry{Actor: who.Name, Action: "slack.hold", Target: h.Target,
		Outcome: broker.OutcomeSuccess, Reason: got.State + " in Slack", Details: s.details(in, map[string]any{"hold": h.ID, "session": h.Session})}); err != nil {
		s.log.Error("slack: audit hold decision", "err", err)
	}
	return ok
}
