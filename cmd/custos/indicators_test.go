package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/deploy/devstack"
)

// TestIndicatorsThroughBroker runs the real broker with quality tolerance
// limits evaluated every second and the Slack emulator as its security
// channel: a limit crossed from the start alerts once over many
// evaluations; a rubber-stamp approval made with the CLI shows on its
// indicator with the request behind it and crosses its limit (one more
// alert); the actions are listed and closed with the CLI; /metrics
// carries the gauges; a requester is refused the dashboard.
func TestIndicatorsThroughBroker(t *testing.T) {
	const security, secret, bot = "C0SECURITY", "8f742231b10e8888abcd99yyyzzz85a5", "xoxb-test-bot"
	emu := slacktest.New(t, slacktest.Options{BotToken: bot, SigningSecret: secret,
		Channels: []slacktest.Channel{{ID: security, Name: "security"}, {ID: "C0APPROVALS", Name: "approvals"}}})
	dir := t.TempDir()
	port := devstack.FreePort(t)
	cfg := fmt.Sprintf(`
listen: {http: "127.0.0.1:%[1]d", data_dir: "%[2]s/data"}
public_url: "http://127.0.0.1:%[1]d"
slack: {enabled: true, bot_token: env:CUSTOS_E2E_SLACK_BOT, signing_secret: env:CUSTOS_E2E_SLACK_SECRET, api_url: "%[3]s", channel: C0APPROVALS, security_channel: %[4]s}
users:
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}
  - {name: bob, password: env:CUSTOS_E2E_PASSWORD}
  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob]}
  - {name: security, members: [sam]}
security_admins: [security]
targets:
  - name: demo-pg
    kind: postgres
    address: 127.0.0.1:5432
    roles: [{name: readonly, policy: {requesters: [dbas], approvers: [approvers], max_duration: 1h}}]
indicators:
  interval: 1s
  rubber_stamp: 1m
  limits:
    - {indicator: users_without_mfa, op: ">=", value: 1}
    - {indicator: rubber_stamp_approvals, op: ">", value: 0}
    - {indicator: retrieval_pass_rate, op: "<", value: 0.95}
`, port, dir, emu.APIURL(), security)
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("http://127.0.0.1:%d", port), homes: map[string]string{},
		env: []string{"CUSTOS_E2E_SLACK_BOT=" + bot, "CUSTOS_E2E_SLACK_SECRET=" + secret}}
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() { b.stop(15) })
	b.login("alice", "bob", "sam")

	// Slack escapes < and >: limits are matched by their indicator.
	notices := func(limit string) int {
		indicator, _, _ := strings.Cut(limit, " ")
		n := 0
		for _, m := range emu.Messages(security) {
			if strings.Contains(m.Content(), "limit crossed: "+indicator+" ") {
				n++
			}
		}
		return n
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out; broker log:\n%s", what, b.logs)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("users_without_mfa alert", func() bool { return notices("users_without_mfa >= 1") > 0 })

	// A rubber stamp: bob approves alice's request at once.
	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-5", "-o", "json"))
	b.ok("bob", "approve", req.ID)
	waitFor("rubber stamp alert", func() bool { return notices("rubber_stamp_approvals > 0") > 0 })
	ind := decode[kri.Indicator](t, b.ok("sam", "indicators", "rubber_stamp_approvals", "-o", "json"))
	if ind.Value == nil || *ind.Value != 1 || !slices.ContainsFunc(ind.Records, func(r kri.Record) bool {
		return r.ID == req.ID && r.Link == "/ui/requests/"+req.ID
	}) {
		t.Fatalf("rubber_stamp_approvals %+v lacks request %s", ind, req.ID)
	}

	// Several more evaluations: no new alert for standing crossings.
	time.Sleep(3500 * time.Millisecond)
	if n, m := notices("users_without_mfa >= 1"), notices("rubber_stamp_approvals > 0"); n != 1 || m != 1 {
		t.Fatalf("alerts: users_without_mfa %d, rubber_stamp_approvals %d; want one each", n, m)
	}
	if notices("retrieval_pass_rate") != 0 {
		t.Fatal("retrieval_pass_rate alerted without data")
	}
	type indicatorList struct {
		Indicators []kri.Indicator `json:"indicators"`
		Actions    []kri.Action    `json:"actions"`
	}
	list := decode[indicatorList](t, b.ok("sam", "indicators", "-o", "json"))
	if len(list.Actions) != 2 {
		t.Fatalf("open actions %+v, want 2", list.Actions)
	}
	for _, in := range list.Indicators {
		if in.Name == "retrieval_pass_rate" && (in.Value != nil || in.Status != kri.StatusNoData) {
			t.Fatalf("retrieval_pass_rate %+v, want no data", in)
		}
	}
	if out := b.ok("sam", "indicators"); !strings.Contains(out, "CROSSED users_without_mfa >= 1") || !strings.Contains(out, "no data") {
		t.Fatalf("text output:\n%s", out)
	}
	body := scrapeMetrics(t, b.url)
	for _, s := range []string{"custos_kri_users_without_mfa 3", "custos_kri_rubber_stamp_approvals 1", "custos_kri_actions_open 2",
		`custos_kri_limit_crossed{indicator="users_without_mfa",limit="users_without_mfa >= 1"} 1`} {
		if !strings.Contains(body, s+"\n") {
			t.Errorf("/metrics lacks %q", s)
		}
	}

	b.refused("alice", "forbidden", "indicators")
	b.refused("sam", "comment", "indicators", "close", list.Actions[0].ID)
	b.ok("sam", "indicators", "close", list.Actions[0].ID, "--comment", "reviewed with the DBA lead, CHG-7")
	if acts := decode[[]kri.Action](t, b.ok("sam", "indicators", "actions", "-o", "json")); len(acts) != 1 {
		t.Fatalf("open actions after closing one: %+v", acts)
	}
	audit := b.ok("sam", "audit", "list", "--action", "kri.", "-o", "json")
	if strings.Count(audit, `"kri.limit_crossed"`) != 2 || strings.Count(audit, `"kri.action.close"`) != 1 {
		t.Fatalf("kri audit records:\n%s", audit)
	}
}

// TestIndicatorSessionsThroughBroker: a psql session through the real
// broker (PostgreSQL, Vault, MinIO) shows on the month's session count
// with its target, and the broker's background verifier checks its
// recording in MinIO and audits the verdict, so no recording fails.
func TestIndicatorSessionsThroughBroker(t *testing.T) {
	st := startFullStack(t, stackOptions{extra: "indicators: {interval: 1s, verify_after: 1s}\n"})
	b := st.b
	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "INC-7", "-o", "json"))
	b.ok("bob", "approve", req.ID)
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	cmd := exec.Command("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", st.pgPort), "-c", "select 42")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "42") {
		t.Fatalf("psql: %v %s", err, out)
	}
	ses := waitSessions(t, b, 1)[0]

	ind := decode[kri.Indicator](t, b.ok("sam", "indicators", "privileged_sessions_month", "-o", "json"))
	if ind.Value == nil || *ind.Value != 1 || len(ind.Breakdown) != 1 || ind.Breakdown[0].Key != "demo-pg" ||
		!slices.ContainsFunc(ind.Records, func(r kri.Record) bool { return r.ID == ses.ID && r.Link == "/ui/sessions/"+ses.ID }) {
		t.Fatalf("privileged_sessions_month %+v lacks session %s on demo-pg", ind, ses.ID)
	}
	// The verifier checks the recording in MinIO and audits the verdict.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := b.ok("sam", "audit", "list", "--action", "session.verify", "--actor", "system", "-o", "json")
		if strings.Contains(out, ses.ID) {
			if !strings.Contains(out, `"success"`) {
				t.Fatalf("background verification of %s did not pass: %s", ses.ID, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no background verification of %s; broker log:\n%s", ses.ID, b.logs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if ind := decode[kri.Indicator](t, b.ok("sam", "indicators", "recordings_failing_verification", "-o", "json")); ind.Value == nil || *ind.Value != 0 {
		t.Fatalf("recordings_failing_verification %+v", ind)
	}

	// The retrieval drill about this session feeds its indicator.
	if ind := decode[kri.Indicator](t, b.ok("sam", "indicators", "retrieval_pass_rate", "-o", "json")); ind.Value != nil {
		t.Fatalf("retrieval_pass_rate before any drill: %+v", ind)
	}
	run := decode[struct {
		PassRate float64 `json:"pass_rate"`
	}](t, b.ok("sam", "drill", "retrieval", "--session", ses.ID, "-o", "json"))
	if ind := decode[kri.Indicator](t, b.ok("sam", "indicators", "retrieval_pass_rate", "-o", "json")); ind.Value == nil || *ind.Value != run.PassRate {
		t.Fatalf("retrieval_pass_rate after a drill with pass rate %v: %+v", run.PassRate, ind)
	}
}

// custos config check refuses a limit on an indicator the broker does not
// compute, naming the known ones, and passes the examples.
func TestIndicatorLimitsConfigCheck(t *testing.T) {
	dir := t.TempDir()
	check := func(limits string) (string, int) {
		t.Helper()
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte("indicators:\n  limits:\n"+limits), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(custosBin, "config", "check", p)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(out), code
	}
	if out, code := check(`    - {indicator: sessions_without_recordings, op: ">", value: 0}` + "\n"); code != 1 ||
		!strings.Contains(out, `unknown indicator "sessions_without_recordings"`) || !strings.Contains(out, "sessions_without_recording,") {
		t.Fatalf("unknown indicator: exit %d: %s", code, out)
	}
	ok := `    - {indicator: sessions_without_recording, op: ">", value: 0}
    - {indicator: users_without_mfa_ratio, op: ">=", value: 0.02}
    - {indicator: drill_failures_quarter, op: ">=", value: 2}
    - {indicator: api_tokens_over_rotation, op: ">=", value: 3}
    - {indicator: retrieval_pass_rate, op: "<", value: 0.95}
`
	if out, code := check(ok); code != 0 {
		t.Fatalf("the issue's limits: exit %d: %s", code, out)
	}
}
