package slack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/broker/holds"
)

// A held statement's notice carries Approve and Deny buttons. The
// session's own user and non-approvers are refused; an approver's click
// decides it once.
func TestHoldNoticeButtons(t *testing.T) {
	store := holds.New(0)
	e := newEnv(t, func(o *envOptions) { o.holds = store })
	decided := make(chan holds.Decision, 1)
	go func() {
		d, _ := store.Hold(context.Background(), holds.Request{Session: "ses_1", User: "alice", Target: "demo-pg", Role: "readonly",
			Text: "DELETE FROM subjects", Rules: []string{"delete_without_where (subjects)"}, Estimate: 812, Timeout: time.Minute})
		decided <- d
	}()
	var id string
	eventually(t, "hold opened", func() bool {
		if l := store.List(); len(l) == 1 {
			id = l[0].ID
			return true
		}
		return false
	})
	if err := e.sl.HoldNotice(e.ctx, "Statement held for approval "+id+": DELETE FROM subjects, ~812 rows", id,
		slack.Link{Text: "Watch the session", Path: "/ui/live/ses_1"}); err != nil {
		t.Fatal(err)
	}
	e.drain()
	m := e.emu.Messages(securityChan)[0]
	if got := actionIDs(m); strings.Join(got, ",") != "custos_hold_approve,custos_hold_deny,custos_open" {
		t.Fatalf("buttons %v", got)
	}
	if !strings.Contains(m.Content(), "DELETE FROM subjects, ~812 rows") {
		t.Fatalf("notice %s", m.Content())
	}

	for user, want := range map[string]string{
		"U0ALICE": "You cannot decide a statement of your own session.",
		"U0SAM":   "You are not an approver for demo-pg/readonly.",
		"U0EVE":   "not linked to a Custos user",
	} {
		e.click(user, m, "custos_hold_approve")
		eventually(t, "refusal for "+user, func() bool {
			eph := e.emu.Ephemerals(user)
			return len(eph) > 0 && strings.Contains(eph[len(eph)-1].Text, want)
		})
	}
	if h, _ := store.Get(id); h.State != holds.Pending {
		t.Fatalf("refused clicks decided the hold: %s", h.State)
	}
	e.click("U0BOB", m, "custos_hold_approve")
	select {
	case d := <-decided:
		if !d.Approved || d.By != "bob" {
			t.Fatalf("decision %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("approval did not reach the held statement")
	}
	e.click("U0CAROL", m, "custos_hold_deny")
	eventually(t, "already decided", func() bool {
		eph := e.emu.Ephemerals("U0CAROL")
		return len(eph) > 0 && strings.Contains(eph[len(eph)-1].Text, "already approved")
	})
	if r := e.auditRecords("slack.hold"); len(r) != 1 || r[0].Actor != "bob" {
		t.Fatalf("audit %+v", r)
	}
}
