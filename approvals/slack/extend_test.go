package slack_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
)

// TestExtensionApprovedInSlack: an extension request reaches the
// approvers as an extension of a named grant to a time of day; a click
// approves it through the same rules, the grant's end moves and the
// message and the requester's DM say so.
func TestExtensionApprovedInSlack(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "INC-123 vacuum", "INC-123")
	first := e.waitMessage(approvals, req.ID)
	if resp, _ := e.click("U0BOB", first, "custos_approve"); resp.Status != http.StatusOK {
		t.Fatalf("approve: %d", resp.Status)
	}
	g, err := e.acc.GetGrant(e.ctx, e.request(req.ID).GrantID)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := e.acc.Extend(e.ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 30 * time.Minute, Reason: "INC-123 still running"})
	if err != nil {
		t.Fatal(err)
	}
	newEnd := g.EndsAt.Add(30*time.Minute).UTC().Format("15:04") + " UTC"
	m := e.waitMessage(approvals, ext.ID)
	for _, want := range []string{"Extension request: demo-pg / readonly", "extension of grant " + g.ID + " to " + newEnd, "*Extension*\n+30m"} {
		if !strings.Contains(m.Content(), want) {
			t.Errorf("extension message lacks %q:\n%s", want, m.Content())
		}
	}
	if resp, _ := e.click("U0BOB", m, "custos_approve"); resp.Status != http.StatusOK {
		t.Fatalf("approve extension: %d", resp.Status)
	}
	got := e.request(ext.ID)
	if got.State != broker.RequestApproved || got.GrantID != g.ID {
		t.Fatalf("extension after click: %s grant %q", got.State, got.GrantID)
	}
	after, _ := e.acc.GetGrant(e.ctx, g.ID)
	if !after.EndsAt.Equal(g.EndsAt.Add(30 * time.Minute)) {
		t.Fatalf("grant ends %v, want %v", after.EndsAt, g.EndsAt.Add(30*time.Minute))
	}
	eventually(t, "message updated", func() bool {
		return strings.Contains(e.current(m).Content(), "Grant "+g.ID+" extended until")
	})
	// The original request's message shows the new end too.
	eventually(t, "original message updated", func() bool {
		return strings.Contains(e.current(first).Content(), "Access granted until <!date^"+itoa(after.EndsAt.Unix()))
	})
	eventually(t, "requester DM", func() bool {
		for _, dm := range dmMessages(e, "U0ALICE") {
			if strings.Contains(dm.Text, "your extension "+ext.ID+" of grant "+g.ID) {
				return true
			}
		}
		return false
	})
}

// TestEndingNoticeDM: a grant ten minutes from its end earns its holder
// one DM saying when it ends and how to extend it, however often the
// broker looks.
func TestEndingNoticeDM(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "readonly", 5*time.Minute, "INC-7 quick look", "INC-7")
	m := e.waitMessage(approvals, req.ID)
	if resp, _ := e.click("U0BOB", m, "custos_approve"); resp.Status != http.StatusOK {
		t.Fatalf("approve: %d", resp.Status)
	}
	g, err := e.acc.GetGrant(e.ctx, e.request(req.ID).GrantID)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := e.acc.NoticeEnding(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	ending := func() []string {
		var out []string
		for _, dm := range dmMessages(e, "U0ALICE") {
			if strings.Contains(dm.Text, "ends at") {
				out = append(out, dm.Text)
			}
		}
		return out
	}
	eventually(t, "ending DM", func() bool { return len(ending()) > 0 })
	e.drain()
	got := ending()
	want := "Your grant " + g.ID + " for *readonly* on *demo-pg* ends at " + g.EndsAt.UTC().Format("15:04") + " UTC"
	if len(got) != 1 || !strings.Contains(got[0], want) || !strings.Contains(got[0], "custos extend "+g.ID) {
		t.Fatalf("ending DMs = %q, want one with %q", got, want)
	}
}

// TestReloadRouting: after a config reload a new request of demo-pg goes
// to the channel the reloaded config names.
func TestReloadRouting(t *testing.T) {
	e := newEnv(t)
	before := e.create("alice", "demo-pg", "readonly", time.Hour, "INC-1", "INC-1")
	e.waitMessage(approvals, before.ID)

	sc := e.cfg.Slack
	sc.Channel = prodChannel
	e.sl.Reload(sc, e.cfg.Targets)
	after := e.create("alice", "demo-pg", "readonly", time.Hour, "INC-2", "INC-2")
	e.waitMessage(prodChannel, after.ID)
	if got := e.messagesFor(approvals, after.ID); len(got) != 0 {
		t.Fatalf("request after the reload posted to the old channel too: %d", len(got))
	}
}
