package slack_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker"
)

func TestApproveWithAClick(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "INC-123 fix <replication> & vacuum", "INC-123")

	m := e.waitMessage(approvals, req.ID)
	content := m.Content()
	for _, want := range []string{
		"*alice* (<@U0ALICE>)", "demo-pg", "readonly", "*Duration*\n1h", "INC-123 fix &lt;replication&gt; &amp; vacuum",
		"<https://tickets.example.test/browse/INC-123|INC-123>", req.ID, "*Approvals*\n0 of 1",
		"<" + publicURL + "/ui/requests/" + req.ID + "|" + req.ID + ">", "*Expires*\n<!date^",
	} {
		if !strings.Contains(content, want) {
			t.Errorf("message lacks %q:\n%s", want, content)
		}
	}
	if got := actionIDs(m); !slices.Equal(got, []string{"custos_approve", "custos_deny", "custos_open"}) {
		t.Fatalf("buttons = %v", got)
	}
	for _, b := range m.Buttons() {
		if b.ActionID != "custos_open" && b.Value != req.ID {
			t.Errorf("button %s carries %q, want the request id", b.ActionID, b.Value)
		}
		if b.ActionID == "custos_open" && b.URL != publicURL+"/ui/requests/"+req.ID {
			t.Errorf("open button url = %q", b.URL)
		}
	}

	resp, _ := e.click("U0BOB", m, "custos_approve")
	if resp.Status != http.StatusOK {
		t.Fatalf("click answered %d %s", resp.Status, resp.Body)
	}
	got := e.request(req.ID)
	if got.State != broker.RequestApproved || got.GrantID == "" {
		t.Fatalf("request after click: %s grant %q", got.State, got.GrantID)
	}
	g, err := e.acc.GetGrant(e.ctx, got.GrantID)
	if err != nil || !slices.Equal(g.Approvers, []string{"bob"}) {
		t.Fatalf("grant %+v %v", g, err)
	}
	if a := got.Approvals[0]; a.By != "bob" || a.Via != "slack" {
		t.Errorf("approval = %+v", a)
	}
	recs := e.auditRecords("request.approve")
	if len(recs) != 1 || recs[0].Outcome != broker.OutcomeSuccess || recs[0].Actor != "bob" || detail(recs[0], "via") != "slack" {
		t.Fatalf("approve audit = %+v", recs)
	}

	eventually(t, "message updated", func() bool { return len(e.current(m).Buttons()) == 0 })
	after := e.current(m)
	for _, want := range []string{"Approved by *bob* (<@U0BOB>)", "Access granted until <!date^" + itoa(g.EndsAt.Unix()), "*Approvals*\n1 of 1"} {
		if !strings.Contains(after.Content(), want) {
			t.Errorf("updated message lacks %q:\n%s", want, after.Content())
		}
	}

	eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })
	dm := dmMessages(e, "U0ALICE")[0]
	if !strings.Contains(dm.Text, "Approved") || !strings.Contains(dm.Text, req.ID) || !strings.Contains(dm.Text, "by bob") {
		t.Errorf("requester DM = %q", dm.Text)
	}
	if len(e.emu.Calls("conversations.open")) == 0 {
		t.Error("the DM was not opened with conversations.open")
	}
	e.drain()
	if n := len(e.emu.Ephemerals("U0BOB")); n != 0 {
		t.Errorf("approver got %d private replies for a click that counted", n)
	}
	if n := len(dmMessages(e, "U0ALICE")); n != 1 {
		t.Errorf("requester got %d DMs, want 1", n)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestTwoOfNNeedsTwoDistinctApprovers(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "readwrite", 30*time.Minute, "schema migration", "")
	m := e.waitMessage(approvals, req.ID)
	if !strings.Contains(m.Content(), "0 of 2") {
		t.Fatalf("message does not say 0 of 2:\n%s", m.Content())
	}
	// dm_approvers: the approvers with a Slack ID get the same message.
	bobDM := e.waitMessage(slacktest.DMChannel("U0BOB"), req.ID)
	carolDM := e.waitMessage(slacktest.DMChannel("U0CAROL"), req.ID)
	if len(dmMessages(e, "U0ALICE")) != 0 {
		t.Error("the requester was DMed as an approver")
	}

	e.click("U0BOB", bobDM, "custos_approve")
	if r := e.request(req.ID); r.State != broker.RequestPending || len(r.Approvals) != 1 {
		t.Fatalf("after one approval: %s with %d", r.State, len(r.Approvals))
	}
	for _, msg := range []slacktest.Message{m, bobDM, carolDM} {
		eventually(t, "1 of 2 shown in "+msg.Channel, func() bool { return strings.Contains(e.current(msg).Content(), "1 of 2") })
		cur := e.current(msg)
		if !strings.Contains(cur.Content(), "Approved by *bob*") || !slices.Contains(actionIDs(cur), "custos_approve") {
			t.Errorf("message in %s after first approval:\n%s", msg.Channel, cur.Content())
		}
	}

	// The same person clicking again, from another copy, does not count.
	e.click("U0BOB", e.current(m), "custos_approve")
	if r := e.request(req.ID); r.State != broker.RequestPending || len(r.Approvals) != 1 {
		t.Fatalf("second click by bob changed the request: %s with %d", r.State, len(r.Approvals))
	}
	eventually(t, "bob told why", func() bool { return len(e.emu.Ephemerals("U0BOB")) == 1 })
	if eph := e.emu.Ephemerals("U0BOB")[0]; !strings.Contains(eph.Text, "already approved") || eph.Channel != approvals {
		t.Errorf("private reply = %+v", eph)
	}
	if recs := e.auditRecords("request.approve"); len(recs) != 2 || auditCode(recs[1]) != "duplicate_approval" {
		t.Errorf("audit after duplicate = %+v", recs)
	}

	e.click("U0CAROL", e.current(m), "custos_approve")
	r := e.request(req.ID)
	if r.State != broker.RequestApproved {
		t.Fatalf("after carol: %s", r.State)
	}
	g, _ := e.acc.GetGrant(e.ctx, r.GrantID)
	if !slices.Equal(g.Approvers, []string{"bob", "carol"}) {
		t.Errorf("grant approvers = %v", g.Approvers)
	}
	for _, msg := range []slacktest.Message{m, bobDM, carolDM} {
		eventually(t, "buttons removed in "+msg.Channel, func() bool { return len(e.current(msg).Buttons()) == 0 })
		if c := e.current(msg).Content(); !strings.Contains(c, "2 of 2") || !strings.Contains(c, "Approved by *carol*") {
			t.Errorf("final message in %s:\n%s", msg.Channel, c)
		}
	}
	eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })
}

func TestDenyAsksForAReason(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "look at orders", "")
	m := e.waitMessage(approvals, req.ID)

	e.click("U0CAROL", m, "custos_deny")
	views := e.emu.Views()
	if len(views) != 1 || views[0].CallbackID != "custos_deny" || views[0].PrivateMetadata != req.ID || views[0].User != "U0CAROL" {
		t.Fatalf("views opened = %+v", views)
	}
	if r := e.request(req.ID); r.State != broker.RequestPending {
		t.Fatalf("opening the dialog changed the request: %s", r.State)
	}

	submit := func(reason string) slacktest.Response {
		p, err := e.emu.Submit("U0CAROL", views[0].ID, map[string]map[string]string{"reason": {"reason": reason}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.emu.Deliver(e.ctx, e.endpoint, p)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := submit("   ")
	var body struct {
		ResponseAction string            `json:"response_action"`
		Errors         map[string]string `json:"errors"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil || body.ResponseAction != "errors" || body.Errors["reason"] == "" {
		t.Fatalf("empty reason answered %d %s", resp.Status, resp.Body)
	}
	if r := e.request(req.ID); r.State != broker.RequestPending {
		t.Fatal("an empty reason denied the request")
	}

	resp = submit("no ticket <@U0ALICE>")
	if resp.Status != http.StatusOK || len(resp.Body) != 0 {
		t.Fatalf("submission answered %d %q, want an empty 200 that closes the modal", resp.Status, resp.Body)
	}
	r := e.request(req.ID)
	if r.State != broker.RequestDenied || r.Denials[0].By != "carol" || r.Denials[0].Comment != "no ticket <@U0ALICE>" || r.Denials[0].Via != "slack" {
		t.Fatalf("after deny: %+v", r)
	}
	eventually(t, "buttons removed", func() bool { return len(e.current(m).Buttons()) == 0 })
	if c := e.current(m).Content(); !strings.Contains(c, "*Denied* by *carol* (<@U0CAROL>): no ticket &lt;@U0ALICE&gt;") {
		t.Errorf("denied message:\n%s", c)
	}
	eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })
	if dm := dmMessages(e, "U0ALICE")[0].Text; !strings.Contains(dm, "Denied") || !strings.Contains(dm, "no ticket") {
		t.Errorf("requester DM = %q", dm)
	}
}

func TestTargetNotApprovableInSlack(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "prod-db", "admin", time.Hour, "", "")
	m := e.waitMessage(prodChannel, req.ID)
	bs := m.Buttons()
	if len(bs) != 1 || bs[0].ActionID != "custos_open" || bs[0].URL != publicURL+"/ui/requests/"+req.ID {
		t.Fatalf("buttons = %+v, want only a link to the web UI", bs)
	}
	if !strings.Contains(m.Content(), "second factor") {
		t.Errorf("message does not say why:\n%s", m.Content())
	}
	if _, err := e.emu.Click("U0BOB", m.Channel, m.TS, "custos_approve"); err == nil {
		t.Fatal("the message offers an approve action")
	}

	// The link button's own notification does nothing.
	resp, _ := e.click("U0BOB", m, "custos_open")
	if resp.Status != http.StatusOK || e.request(req.ID).State != broker.RequestPending {
		t.Fatalf("link click: %d, request %s", resp.Status, e.request(req.ID).State)
	}

	// A payload naming the approve action, validly signed, is refused.
	for _, action := range []string{"custos_approve", "custos_deny"} {
		p := e.emu.BlockActions(slacktest.Action{User: "U0BOB", Channel: m.Channel, MessageTS: m.TS, ActionID: action, Value: req.ID})
		if resp, err := e.emu.Deliver(e.ctx, e.endpoint, p); err != nil || resp.Status != http.StatusOK {
			t.Fatalf("forged %s: %v %d", action, err, resp.Status)
		}
	}
	r := e.request(req.ID)
	if r.State != broker.RequestPending || len(r.Approvals) != 0 {
		t.Fatalf("forged approve changed the request: %+v", r)
	}
	recs := e.auditRecords("slack.reject")
	if len(recs) != 2 || auditCode(recs[0]) != "slack_approval_disabled" || recs[0].Actor != "bob" {
		t.Fatalf("audit = %+v", recs)
	}
	if len(e.auditRecords("request.approve")) != 0 {
		t.Error("the forged approve reached the access service")
	}
	if len(e.emu.Views()) != 0 {
		t.Error("a deny dialog was opened")
	}
	eventually(t, "bob told where to decide", func() bool { return len(e.emu.Ephemerals("U0BOB")) == 2 })
	if eph := e.emu.Ephemerals("U0BOB")[0]; !strings.Contains(eph.Text, publicURL+"/ui/requests/"+req.ID) {
		t.Errorf("private reply = %q", eph.Text)
	}
	e.drain()
	if cur := e.current(m); cur.Edits != 0 {
		t.Errorf("message edited %d times after refused clicks", cur.Edits)
	}
}

func TestRevokedAndCancelledShowInTheMessage(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "check", "")
	m := e.waitMessage(approvals, req.ID)
	e.click("U0BOB", m, "custos_approve")
	g, err := e.acc.Revoke(e.ctx, "sam", e.request(req.ID).GrantID, "incident over")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "revocation shown", func() bool { return strings.Contains(e.current(m).Content(), "*revoked* by *sam*") })
	if c := e.current(m).Content(); !strings.Contains(c, "incident over") || !strings.Contains(c, itoa(g.RevokedAt.Unix())) {
		t.Errorf("revoked message:\n%s", c)
	}
	eventually(t, "requester told of revocation", func() bool { return len(dmMessages(e, "U0ALICE")) == 2 })
	if dm := dmMessages(e, "U0ALICE")[1].Text; !strings.Contains(dm, "Revoked") || !strings.Contains(dm, "incident over") {
		t.Errorf("revocation DM = %q", dm)
	}

	req2 := e.create("alice", "demo-pg", "readonly", time.Hour, "second", "")
	m2 := e.waitMessage(approvals, req2.ID)
	if _, err := e.acc.Cancel(e.ctx, "alice", req2.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cancellation shown", func() bool { return strings.Contains(e.current(m2).Content(), "*Cancelled*") })
	if len(e.current(m2).Buttons()) != 0 {
		t.Error("cancelled request still has buttons")
	}
	e.drain()
	if n := len(dmMessages(e, "U0ALICE")); n != 2 {
		t.Errorf("requester got %d DMs; a cancellation needs none", n)
	}
}

func TestReminderThenExpiry(t *testing.T) {
	e := newEnv(t, withScheduler)
	req := e.create("alice", "demo-pg", "brief", 10*time.Minute, "", "")
	m := e.waitMessage(approvals, req.ID)
	bobDM := e.waitMessage(slacktest.DMChannel("U0BOB"), req.ID)
	carolDM := e.waitMessage(slacktest.DMChannel("U0CAROL"), req.ID)
	e.click("U0BOB", bobDM, "custos_approve")
	replies := func(root slacktest.Message) []slacktest.Message {
		var out []slacktest.Message
		for _, x := range e.emu.Messages(root.Channel) {
			if x.ThreadTS == root.TS {
				out = append(out, x)
			}
		}
		return out
	}
	eventually(t, "reminder", func() bool { return len(replies(m)) == 1 })
	rem := replies(m)[0]
	if left := time.Until(req.ExpiresAt); left > 2*time.Second+200*time.Millisecond || left < time.Second {
		t.Errorf("reminder came %s before expiry, policy says 2s", left)
	}
	for _, want := range []string{"Reminder", req.ID, "<@U0CAROL>", "needs 1 more approval"} {
		if !strings.Contains(rem.Text, want) {
			t.Errorf("reminder lacks %q: %q", want, rem.Text)
		}
	}
	for _, who := range []string{"<@U0ALICE>", "<@U0BOB>"} {
		if strings.Contains(rem.Text, who) {
			t.Errorf("the reminder asks %s, who may not or did already decide: %q", who, rem.Text)
		}
	}
	eventually(t, "carol's DM reminder", func() bool { return len(replies(carolDM)) == 1 })
	eventually(t, "expiry shown", func() bool { return strings.Contains(e.current(m).Content(), "*Expired*") })
	for _, msg := range []slacktest.Message{m, bobDM, carolDM} {
		eventually(t, "buttons removed", func() bool { return len(e.current(msg).Buttons()) == 0 })
	}
	eventually(t, "requester told", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })
	if dm := dmMessages(e, "U0ALICE")[0].Text; !strings.Contains(dm, "Expired") || !strings.Contains(dm, "1 of 2") {
		t.Errorf("expiry DM = %q", dm)
	}
	time.Sleep(300 * time.Millisecond) // several sweeps
	if n, nb, nc := len(replies(m)), len(replies(bobDM)), len(replies(carolDM)); n != 1 || nb != 0 || nc != 1 {
		t.Errorf("reminders: channel %d, bob %d, carol %d; want 1, 0, 1", n, nb, nc)
	}
}

func TestSecurityNotice(t *testing.T) {
	e := newEnv(t)
	if err := e.sl.SecurityNotice(e.ctx, "break-glass account pg-admin unsealed by sam and carol: <!channel> & co"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "notice", func() bool { return len(e.emu.Messages(securityChan)) == 1 })
	if got := e.emu.Messages(securityChan)[0].Text; got != "break-glass account pg-admin unsealed by sam and carol: &lt;!channel&gt; &amp; co" {
		t.Errorf("notice = %q", got)
	}
	e.drain()
	if n := len(e.emu.Messages(securityChan)); n != 2 { // the notice and the drain marker
		t.Errorf("%d messages in the security channel, want 2", n)
	}
}
