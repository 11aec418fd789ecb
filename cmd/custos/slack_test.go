package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/deploy/devstack"
)

// TestSlackApprovalThroughBroker checks the wiring of the real broker to
// Slack: a request made with the CLI is posted to the approval channel,
// a signed click by the approver grants access, and a click by the
// requester changes nothing.
func TestSlackApprovalThroughBroker(t *testing.T) {
	const channel, secret, bot = "C0APPROVALS", "8f742231b10e8888abcd99yyyzzz85a5", "xoxb-test-bot"
	emu := slacktest.New(t, slacktest.Options{
		BotToken: bot, SigningSecret: secret,
		Users:    []slacktest.User{{ID: "U0ALICE", Name: "alice"}, {ID: "U0BOB", Name: "bob"}},
		Channels: []slacktest.Channel{{ID: channel, Name: "approvals"}},
	})
	dir := t.TempDir()
	port := devstack.FreePort(t)
	cfg := fmt.Sprintf(`
listen: {http: "127.0.0.1:%d", data_dir: "%s/data"}
slack: {enabled: true, bot_token: env:CUSTOS_E2E_SLACK_BOT, signing_secret: env:CUSTOS_E2E_SLACK_SECRET, api_url: "%s", channel: %s}
users:
  - {name: alice, slack_id: U0ALICE, password: env:CUSTOS_E2E_PASSWORD}
  - {name: bob, slack_id: U0BOB, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: approvers, members: [bob]}
targets:
  - name: demo-pg
    kind: postgres
    address: 127.0.0.1:5432
    roles: [{name: readonly, policy: {approvers: [approvers], max_duration: 1h}}]
`, port, dir, emu.APIURL(), channel)
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("http://127.0.0.1:%d", port), homes: map[string]string{},
		env: []string{"CUSTOS_E2E_SLACK_BOT=" + bot, "CUSTOS_E2E_SLACK_SECRET=" + secret}}
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() { b.stop(15) })
	b.login("alice")

	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "-o", "json"))
	var msg slacktest.Message
	deadline := time.Now().Add(15 * time.Second)
	for {
		if ms := emu.Messages(channel); len(ms) > 0 && strings.Contains(ms[0].Content(), req.ID) {
			msg = ms[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s not posted to %s; broker log:\n%s", req.ID, channel, b.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	endpoint := b.url + "/slack/interactions"

	// The requester's own click is refused and grants nothing.
	payload, err := emu.Click("U0ALICE", channel, msg.TS, "custos_approve")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.Deliver(ctx, endpoint, payload); err != nil {
		t.Fatal(err)
	}
	// A forged signature is refused outright.
	payload, _ = emu.Click("U0BOB", channel, msg.TS, "custos_approve")
	if r, err := emu.Deliver(ctx, endpoint, payload, slacktest.WithSecret("not-the-secret")); err != nil || r.Status != 401 {
		t.Fatalf("forged click: %v %+v", err, r)
	}
	if got := decode[jsonRequest](t, requestJSON(t, b, req.ID)); got.State != "pending" {
		t.Fatalf("refused clicks changed the request: %s", got.State)
	}
	// bob's signed click approves.
	payload, _ = emu.Click("U0BOB", channel, msg.TS, "custos_approve")
	if r, err := emu.Deliver(ctx, endpoint, payload); err != nil || r.Status != 200 {
		t.Fatalf("approver click: %v %+v", err, r)
	}
	for {
		got := decode[jsonRequest](t, requestJSON(t, b, req.ID))
		if got.State == "approved" && got.GrantID != "" {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("request not approved via Slack: %+v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The shared message is updated to show the decision, without buttons.
	for {
		ms := emu.Messages(channel)
		if len(ms) > 0 && ms[0].Edits > 0 && len(ms[0].Buttons()) == 0 && strings.Contains(strings.ToLower(ms[0].Content()), "approved") {
			break
		}
		if time.Now().After(deadline.Add(15 * time.Second)) {
			t.Fatalf("message not updated: %+v", ms)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func requestJSON(t *testing.T, b *brokerProc, id string) string {
	t.Helper()
	for _, raw := range decode[[]json.RawMessage](t, b.ok("alice", "requests", "--mine", "-o", "json")) {
		if decode[jsonRequest](t, string(raw)).ID == id {
			return string(raw)
		}
	}
	t.Fatalf("request %s not listed", id)
	return ""
}
