package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	slackapprovals "github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/broker/holds"
	pgproxy "github.com/custos-pam/custos/protocols/postgres"
)

// guardrailWiring is what the PostgreSQL proxy's guardrails use: the
// store where held statements wait, and the notices.
type guardrailWiring struct {
	holds   *holds.Store
	notices *guardrailNotices
}

func newGuardrailWiring(log *slog.Logger) guardrailWiring {
	n := &guardrailNotices{log: log}
	hs := holds.New(0)
	hs.AddNotifier(n)
	return guardrailWiring{holds: hs, notices: n}
}

// guardrailNotices tells the security channel about statement guardrail
// alerts and holds as they happen. Slack starts after the proxies, so the
// notifier is attached when it exists; until then (and without Slack)
// alerts and holds are recorded and audited only, and holds are decided
// in the web UI, the API or with custos holds.
type guardrailNotices struct {
	slack atomic.Pointer[securityNotifierBox]
	log   *slog.Logger
}

// holdNotifier is the Slack channel as the guardrails use it.
type holdNotifier interface {
	securityNotifier
	HoldNotice(ctx context.Context, text, holdID string, l slackapprovals.Link) error
}

type securityNotifierBox struct{ n holdNotifier }

func (g *guardrailNotices) attach(n holdNotifier) {
	if n != nil {
		g.slack.Store(&securityNotifierBox{n})
	}
}

func (g *guardrailNotices) post(text string, l slackapprovals.Link) {
	b := g.slack.Load()
	if b == nil {
		return
	}
	if err := b.n.SecurityNoticeWithLink(context.Background(), text, l); err != nil {
		g.log.Warn("guardrail notice not posted", "err", err)
	}
}

// GuardrailAlert posts an alert with a button to the session's live view,
// where security can watch and terminate it.
func (g *guardrailNotices) GuardrailAlert(a pgproxy.GuardrailAlert) {
	g.post(fmt.Sprintf("*Guardrail alert* on %s/%s: %s ran a statement touching %s (session %s, database %s):\n%s",
		a.Target, a.Role, a.User, strings.Join(a.Rules, ", "), a.Session, a.Database, clipStatement(a.Text)),
		slackapprovals.Link{Text: "Watch live / terminate", Path: "/ui/live/" + a.Session})
}

// HoldOpened posts a held statement for its approvers: the exact text,
// the role, the session and the row estimate, with Approve and Deny
// buttons.
func (g *guardrailNotices) HoldOpened(h holds.Hold) {
	b := g.slack.Load()
	if b == nil {
		return
	}
	est := "unknown"
	if h.Estimate >= 0 {
		est = fmt.Sprintf("~%d rows", h.Estimate)
	} else if h.EstimateNote != "" {
		est += " (" + h.EstimateNote + ")"
	}
	text := fmt.Sprintf("*Statement held for approval* %s: %s on %s/%s (session %s, database %s) touched %s.\nRow estimate: %s. Expires %s.\n%s\nOr decide with: custos holds approve %s / custos holds deny %s",
		h.ID, h.User, h.Target, h.Role, h.Session, h.Database, strings.Join(h.Rules, ", "), est,
		h.Expires.Format("15:04:05 MST"), clipStatement(h.Text), h.ID, h.ID)
	if err := b.n.HoldNotice(context.Background(), text, h.ID, slackapprovals.Link{Text: "Watch the session", Path: "/ui/live/" + h.Session}); err != nil {
		g.log.Warn("hold notice not posted", "hold", h.ID, "err", err)
	}
}

// HoldDecided posts the outcome.
func (g *guardrailNotices) HoldDecided(h holds.Hold) {
	by := h.DecidedBy
	if by == "" {
		by = "nobody"
	}
	g.post(fmt.Sprintf("Held statement %s of %s on %s/%s: %s (by %s) %s", h.ID, h.User, h.Target, h.Role, h.State, by, h.Reason),
		slackapprovals.Link{})
}

// clipStatement bounds a statement in a Slack message.
func clipStatement(s string) string {
	const max = 2000
	if len(s) > max {
		s = s[:max] + " …"
	}
	return s
}
