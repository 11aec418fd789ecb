package slack_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker"
)

// TestSignedRoleHandsOffToWeb: a role whose decisions are electronic
// signatures is never decided by a Slack button, even on a target that
// allows Slack approvals: the message carries a "Sign in Custos" link
// instead of Approve/Deny, and a validly signed Slack payload naming
// approve or deny is refused with signature_required and never reaches
// the access service.
func TestSignedRoleHandsOffToWeb(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "change", time.Hour, "", "")
	m := e.waitMessage(approvals, req.ID)
	bs := m.Buttons()
	if len(bs) != 1 || bs[0].ActionID != "custos_open" || bs[0].URL != publicURL+"/ui/requests/"+req.ID || !strings.Contains(m.Content(), "Sign in Custos") {
		t.Fatalf("buttons = %+v, want only a Sign in Custos link:\n%s", bs, m.Content())
	}
	if !strings.Contains(m.Content(), "electronic signature") {
		t.Errorf("message does not say why:\n%s", m.Content())
	}
	for _, action := range []string{"custos_approve", "custos_deny"} {
		p := e.emu.BlockActions(slacktest.Action{User: "U0BOB", Channel: m.Channel, MessageTS: m.TS, ActionID: action, Value: req.ID})
		if resp, err := e.emu.Deliver(e.ctx, e.endpoint, p); err != nil || resp.Status != http.StatusOK {
			t.Fatalf("forged %s: %v %d", action, err, resp.Status)
		}
	}
	if r := e.request(req.ID); r.State != broker.RequestPending || len(r.Approvals)+len(r.Denials) != 0 {
		t.Fatalf("a Slack click decided a signed role: %+v", r)
	}
	recs := e.auditRecords("slack.reject")
	if len(recs) != 2 || auditCode(recs[0]) != "signature_required" {
		t.Fatalf("audit = %+v", recs)
	}
	if len(e.auditRecords("request.approve"))+len(e.auditRecords("request.deny")) != 0 {
		t.Error("the click reached the access service")
	}
	eventually(t, "bob told where to sign", func() bool { return len(e.emu.Ephemerals("U0BOB")) == 2 })
	if eph := e.emu.Ephemerals("U0BOB")[0]; !strings.Contains(eph.Text, "electronic signature") || !strings.Contains(eph.Text, "/ui/requests/"+req.ID) {
		t.Errorf("private reply = %q", eph.Text)
	}
}
