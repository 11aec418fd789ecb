package slack_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

// TestSocketMode runs the same flow with no inbound endpoint: clicks
// arrive as interactive envelopes over the Socket Mode websocket.
func TestSocketMode(t *testing.T) {
	e := newEnv(t, withSocketMode)
	eventually(t, "socket mode connection", e.emu.SocketConnected)
	if calls := e.emu.Calls("apps.connections.open"); len(calls) == 0 || calls[0].Error != "" {
		t.Fatalf("apps.connections.open calls = %+v", calls)
	}

	req := e.create("alice", "demo-pg", "readonly", time.Hour, "socket mode", "")
	m := e.waitMessage(approvals, req.ID)

	// With only an app token there is no HTTP endpoint to attack.
	if resp := deliver(e, clickPayload(e, "U0BOB", m, "custos_approve")); resp.Status == http.StatusOK {
		t.Fatalf("HTTP endpoint answered %d without a signing secret", resp.Status)
	}
	if e.request(req.ID).State != broker.RequestPending {
		t.Fatal("the HTTP click counted")
	}

	// A non-approver's click over the socket is refused like over HTTP.
	ack, err := e.emu.SendSocket(e.ctx, clickPayload(e, "U0SAM", m, "custos_approve"), 0)
	if err != nil || string(ack) != "null" {
		t.Fatalf("ack = %s, %v", ack, err)
	}
	if recs := e.auditRecords("request.approve"); len(recs) != 1 || auditCode(recs[0]) != "not_approver" || detail(recs[0], "via") != "slack" {
		t.Fatalf("audit = %+v", recs)
	}
	eventually(t, "sam told", func() bool { return len(e.emu.Ephemerals("U0SAM")) == 1 })

	p := clickPayload(e, "U0BOB", m, "custos_approve")
	if _, err := e.emu.SendSocket(e.ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	r := e.request(req.ID)
	if r.State != broker.RequestApproved || r.Approvals[0].By != "bob" || r.Approvals[0].Via != "slack" {
		t.Fatalf("after socket click: %+v", r)
	}
	eventually(t, "message updated", func() bool { return len(e.current(m).Buttons()) == 0 })
	if !strings.Contains(e.current(m).Content(), "Approved by *bob*") {
		t.Errorf("message:\n%s", e.current(m).Content())
	}
	eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })

	// Slack redelivers an envelope it thinks was not acknowledged: a replay.
	if _, err := e.emu.SendSocket(e.ctx, p, 1); err != nil {
		t.Fatal(err)
	}
	if recs := e.auditRecords("slack.replay"); len(recs) != 1 || detail(recs[0], "transport") != "socket" {
		t.Fatalf("replay audit = %+v", recs)
	}
	if n := len(e.auditRecords("request.approve")); n != 2 {
		t.Errorf("%d request.approve records, want 2 (sam refused, bob)", n)
	}
}

// TestSocketModeDenyModal: the modal's validation errors travel back in
// the envelope's ack, and the connection survives a Slack-requested
// reconnect.
func TestSocketModeDenyModal(t *testing.T) {
	e := newEnv(t, withSocketMode)
	eventually(t, "socket mode connection", e.emu.SocketConnected)
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "socket deny", "")
	m := e.waitMessage(approvals, req.ID)

	if err := e.emu.Disconnect(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reconnected", func() bool {
		return len(e.emu.Calls("apps.connections.open")) >= 2 && e.emu.SocketConnected()
	})

	if _, err := e.emu.SendSocket(e.ctx, clickPayload(e, "U0CAROL", m, "custos_deny"), 0); err != nil {
		t.Fatal(err)
	}
	views := e.emu.Views()
	if len(views) != 1 {
		t.Fatalf("views = %+v", views)
	}
	p, _ := e.emu.Submit("U0CAROL", views[0].ID, map[string]map[string]string{"reason": {"reason": ""}})
	ack, err := e.emu.SendSocket(e.ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		ResponseAction string            `json:"response_action"`
		Errors         map[string]string `json:"errors"`
	}
	if err := json.Unmarshal(ack, &body); err != nil || body.ResponseAction != "errors" || body.Errors["reason"] == "" {
		t.Fatalf("ack = %s", ack)
	}
	p, _ = e.emu.Submit("U0CAROL", views[0].ID, map[string]map[string]string{"reason": {"reason": "wrong ticket"}})
	if ack, err := e.emu.SendSocket(e.ctx, p, 0); err != nil || string(ack) != "null" {
		t.Fatalf("ack = %s %v", ack, err)
	}
	if r := e.request(req.ID); r.State != broker.RequestDenied || r.Denials[0].Comment != "wrong ticket" {
		t.Fatalf("after deny: %+v", r)
	}
	eventually(t, "denial shown", func() bool { return strings.Contains(e.current(m).Content(), "*Denied* by *carol*") })
}
