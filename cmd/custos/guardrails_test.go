package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
)

// The statement guardrails through the real broker: a DELETE without
// WHERE sent with psql waits, is listed for the approver with its text and
// row estimate (custos holds), cannot be approved by the session's own
// user, and runs once after the approver's custos holds approve; a denied
// statement gets SQLSTATE 42501 and the session goes on.
func TestGuardrailHoldThroughBroker(t *testing.T) {
	const channel, secret, bot = "C0SECURITY", "8f742231b10e8888abcd99yyyzzz85a5", "xoxb-test-bot"
	emu := slacktest.New(t, slacktest.Options{
		BotToken: bot, SigningSecret: secret,
		Users:    []slacktest.User{{ID: "U0ALICE", Name: "alice"}, {ID: "U0BOB", Name: "bob"}},
		Channels: []slacktest.Channel{{ID: channel, Name: "security"}},
	})
	st := startFullStack(t, stackOptions{edit: func(cfg string) string {
		cfg = strings.Replace(cfg, "      - name: readwrite\n        per_session: true\n",
			"      - name: readwrite\n        per_session: true\n        guardrails: {hold_timeout: 2m}\n", 1)
		cfg = strings.Replace(cfg, "{name: alice, ", "{name: alice, slack_id: U0ALICE, ", 1)
		cfg = strings.Replace(cfg, "{name: bob, ", "{name: bob, slack_id: U0BOB, ", 1)
		return cfg + fmt.Sprintf("slack: {enabled: true, bot_token: %q, signing_secret: %q, api_url: %q, channel: %s}\n",
			bot, secret, emu.APIURL(), channel)
	}})
	b, pg := st.b, st.pg
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE TABLE guarded (id int); INSERT INTO guarded SELECT generate_series(1, 300); ANALYZE guarded"); err != nil {
		t.Fatal(err)
	}
	rows := func() int {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM guarded").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readwrite", "--for", "10m", "--reason", "INC-18", "-o", "json"))
	b.ok("bob", "approve", req.ID)
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg", "--role", "readwrite"))
	psql := func(script string) (string, error) {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "VERBOSITY=verbose",
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require options='-c custos.role=readwrite'", st.pgPort))
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
		cmd.Stdin = strings.NewReader(script)
		o, err := cmd.CombinedOutput()
		return string(o), err
	}

	// Denied: a clear error, and the session goes on.
	out, err := psql("\\set VERBOSITY verbose\nDROP TABLE guarded;\nSELECT 'still here';\n")
	if err != nil || !strings.Contains(out, "42501: custos: statement denied by guardrail drop (table)") || !strings.Contains(out, "still here") {
		t.Fatalf("denied DROP: %v\n%s", err, out)
	}

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() { o, err := psql("DELETE FROM guarded;\n"); done <- result{o, err} }()

	type hold struct {
		ID, State, User, Role, Text string
		Estimate                    int64
		CanDecide                   bool `json:"can_decide"`
	}
	var h hold
	deadline := time.Now().Add(30 * time.Second)
	for h.ID == "" {
		var hs []hold
		if err := json.Unmarshal([]byte(b.ok("bob", "holds", "-o", "json")), &hs); err != nil {
			t.Fatal(err)
		}
		for _, x := range hs {
			if x.State == "pending" {
				h = x
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending hold listed for bob\nbroker log:\n%s", b.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if h.Text != "DELETE FROM guarded;" || h.User != "alice" || h.Role != "readwrite" || h.Estimate != 300 || !h.CanDecide {
		t.Fatalf("hold as bob sees it: %+v", h)
	}
	if n := rows(); n != 300 {
		t.Fatalf("held DELETE ran before approval: %d rows", n)
	}
	if _, errs, code := b.run("alice", "", "holds", "approve", h.ID); code == 0 || !strings.Contains(errs, "forbidden") {
		t.Fatalf("alice approved her own statement: exit %d %s", code, errs)
	}
	b.ok("bob", "holds", "approve", h.ID, "--reason", "INC-18 agreed")
	r := <-done
	if r.err != nil || !strings.Contains(r.out, "statement held for approval") || !strings.Contains(r.out, "DELETE 300") {
		t.Fatalf("approved DELETE: %v\n%s", r.err, r.out)
	}
	if n := rows(); n != 0 {
		t.Fatalf("%d rows after the approved DELETE", n)
	}
	if _, errs, code := b.run("bob", "", "holds", "approve", h.ID); code == 0 || !strings.Contains(errs, "already_decided") {
		t.Fatalf("second approval of a used hold: exit %d %s", code, errs)
	}
	// The same through Slack: the security channel shows the held
	// statement with its estimate; alice's own click is refused, bob's
	// runs it once.
	if _, err := admin.Exec(ctx, "INSERT INTO guarded SELECT generate_series(1, 300); ANALYZE guarded"); err != nil {
		t.Fatal(err)
	}
	go func() { o, err := psql("DELETE FROM guarded;\n"); done <- result{o, err} }()
	var msg slacktest.Message
	deadline = time.Now().Add(30 * time.Second)
	for msg.TS == "" {
		for _, m := range emu.Messages(channel) {
			if strings.Contains(m.Content(), "Statement held for approval") && !strings.Contains(m.Content(), h.ID) {
				msg = m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hold not posted to Slack; broker log:\n%s", b.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(msg.Content(), "DELETE FROM guarded;") || !strings.Contains(msg.Content(), "~300 rows") {
		t.Fatalf("Slack hold message:\n%s", msg.Content())
	}
	endpoint := b.url + "/slack/interactions"
	for _, user := range []string{"U0ALICE", "U0BOB"} {
		payload, err := emu.Click(user, channel, msg.TS, "custos_hold_approve")
		if err != nil {
			t.Fatal(err)
		}
		// Signed as Slack signs; sent over the broker's TLS listener.
		sg := emu.Sign(payload)
		hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(sg.Body))
		hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		hreq.Header.Set("X-Slack-Request-Timestamp", sg.Timestamp)
		hreq.Header.Set("X-Slack-Signature", sg.Signature)
		resp, err := readyClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("interaction by %s: %d", user, resp.StatusCode)
		}
		if user == "U0ALICE" {
			time.Sleep(300 * time.Millisecond)
			if n := rows(); n != 300 {
				t.Fatalf("alice's own Slack click ran the statement: %d rows", n)
			}
		}
	}
	r = <-done
	if r.err != nil || !strings.Contains(r.out, "DELETE 300") || rows() != 0 {
		t.Fatalf("DELETE approved in Slack: %v\n%s", r.err, r.out)
	}

	// The decision is in the audit log, with who decided.
	audit := b.ok("sam", "audit", "list", "--action", "postgres.guardrail", "-o", "json")
	if !strings.Contains(audit, "postgres.guardrail") || !strings.Contains(audit, "approved by bob") {
		t.Fatalf("audit log lacks the guardrail decision:\n%.2000s", audit)
	}
}
