package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/deploy/devstack"
)

const breakGlassConfig = `
listen:
  http: "127.0.0.1:%[1]d"
  postgres: "127.0.0.1:%[2]d"
  tls_cert: %[3]s/tls.crt
  tls_key: %[3]s/tls.key
  data_dir: %[3]s/data
store: {driver: sqlite, path: %[3]s/custos.db}
public_url: "https://127.0.0.1:%[1]d"
recording: {encryption: local}
vault: {address: "%[4]s", token: env:CUSTOS_E2E_VAULT_TOKEN}
slack: {enabled: true, bot_token: env:CUSTOS_E2E_SLACK_BOT, signing_secret: env:CUSTOS_E2E_SLACK_SECRET, api_url: "%[5]s", channel: C0APPROVALS, security_channel: C0SECURITY}
users:
  - {name: sam, password: env:CUSTOS_E2E_PASSWORD, totp_secret: env:CUSTOS_E2E_TOTP_SAM}
  - {name: carol, password: env:CUSTOS_E2E_PASSWORD, totp_secret: env:CUSTOS_E2E_TOTP_CAROL}
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: custodians, members: [sam, carol]}
targets:
  - name: demo-pg
    kind: postgres
    address: "%[6]s"
    roles:
      - {name: readonly, policy: {approvers: [custodians]}}
      - {name: bg, vault_role: breakglass}
breakglass:
  - {name: pg-admin, target: demo-pg, role: bg, custodians: [custodians]}
`

type bgUnsealJSON struct {
	ID            string    `json:"id"`
	Outcome       string    `json:"outcome"`
	GrantID       string    `json:"grant_id"`
	OpenUntil     time.Time `json:"open_until"`
	Confirmations []struct {
		Custodian string `json:"custodian"`
	} `json:"confirmations"`
}

type bgDrillJSON struct {
	ID          string `json:"id"`
	UnsealID    string `json:"unseal_id"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason"`
	RecordingID string `json:"recording_id"`
	Steps       []struct {
		Name    string `json:"name"`
		Outcome string `json:"outcome"`
	} `json:"steps"`
}

// TestBreakGlassThroughBroker drives break-glass through the real binary
// and CLI: dual control with TOTP, psql through the proxy as the sealed
// account (recorded), close with rotation verified against PostgreSQL,
// a drill with its report, the metrics and the Slack notices.
func TestBreakGlassThroughBroker(t *testing.T) {
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	if _, err := exec.LookPath("psql"); err != nil {
		devstack.Require(t, "psql", "apt-get install postgresql-client")
	}
	const bot, secret = "xoxb-bg-e2e", "bg-e2e-signing-secret-0123456789"
	emu := slacktest.New(t, slacktest.Options{BotToken: bot, SigningSecret: secret,
		Channels: []slacktest.Channel{{ID: "C0APPROVALS", Name: "approvals"}, {ID: "C0SECURITY", Name: "security"}}})

	dir := t.TempDir()
	writeTLS(t, dir)
	httpPort, pgPort := devstack.FreePort(t), devstack.FreePort(t)
	keys := map[string][]byte{}
	env := []string{"CUSTOS_E2E_VAULT_TOKEN=" + v.BrokerToken, "CUSTOS_CA_CERT=" + filepath.Join(dir, "tls.crt"),
		"CUSTOS_E2E_SLACK_BOT=" + bot, "CUSTOS_E2E_SLACK_SECRET=" + secret}
	for _, u := range []string{"sam", "carol"} {
		var b [20]byte
		_, _ = rand.Read(b[:])
		s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
		keys[u], _ = identity.ParseTOTPSecret(s)
		env = append(env, "CUSTOS_E2E_TOTP_"+strings.ToUpper(u)+"="+s)
	}
	// Codes one step apart, so each use is later than the last (the broker
	// refuses a code twice): login, unseal or confirm, drill.
	code := func(user string, steps int) string {
		return identity.TOTP(keys[user], time.Now().Add(time.Duration(steps)*30*time.Second))
	}
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("https://127.0.0.1:%d", httpPort),
		homes: map[string]string{}, env: env}
	cfg := fmt.Sprintf(breakGlassConfig, httpPort, pgPort, dir, v.Addr, emu.APIURL(), pg.Addr())
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() { b.stop(15) })
	as := func(user string, args ...string) (string, string, int) {
		return b.run(user, e2ePassword+"\n", args...)
	}
	mustAs := func(user string, args ...string) string {
		t.Helper()
		out, errs, c := as(user, args...)
		if c != 0 {
			t.Fatalf("custos %v as %s: exit %d: %s\nbroker log:\n%s", args, user, c, errs, b.logs)
		}
		return out
	}
	refusedAs := func(user, want string, args ...string) {
		t.Helper()
		if _, errs, c := as(user, args...); c == 0 || !strings.Contains(errs, want) {
			t.Fatalf("custos %v as %s: want %s, got exit %d: %s", args, user, want, c, errs)
		}
	}
	for _, u := range []string{"sam", "carol"} {
		mustAs(u, "login", "--user", u, "--password-stdin", "--totp", code(u, -1))
	}
	b.login("alice")

	vault := func() (string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", v.Addr+"/v1/database/static-creds/breakglass", nil)
		req.Header.Set("X-Vault-Token", v.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Data struct{ Username, Password string } `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return body.Data.Username, body.Data.Password
	}
	direct := func(user, pass string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d dbname=postgres user=%s password=%s sslmode=prefer", pg.Host, pg.Port, user, pass))
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}

	list := mustAs("sam", "breakglass", "list")
	if !strings.Contains(list, "pg-admin") || !strings.Contains(list, "sealed") {
		t.Fatalf("breakglass list:\n%s", list)
	}
	refusedAs("alice", "not_custodian", "breakglass", "unseal", "pg-admin", "--reason", "x", "--incident", "INC-1", "--password-stdin")
	u := decode[bgUnsealJSON](t, mustAs("sam", "breakglass", "unseal", "pg-admin", "--reason", "primary down", "--incident", "INC-4711",
		"--password-stdin", "--totp", code("sam", 0), "-o", "json"))
	if u.Outcome != "pending" || len(u.Confirmations) != 1 {
		t.Fatalf("unseal: %+v", u)
	}
	refusedAs("sam", "already_confirmed", "breakglass", "confirm", u.ID, "--password-stdin", "--totp", code("sam", 1))
	refusedAs("alice", "not_custodian", "breakglass", "confirm", u.ID, "--password-stdin")
	refusedAs("sam", "no active grant", "db", "token", "demo-pg")
	out := mustAs("carol", "breakglass", "confirm", u.ID, "--password-stdin", "--totp", code("carol", 0))
	if !strings.Contains(out, "pg-admin is OPEN for sam") {
		t.Fatalf("confirm: %s", out)
	}

	// psql through the broker as the sealed account, recorded.
	user, oldPW := vault()
	token := strings.TrimSpace(mustAs("sam", "db", "token", "demo-pg"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	psql := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=sam sslmode=require", pgPort), "-c", "select current_user || ' via break-glass'")
	psql.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	if o, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(o)) != user+" via break-glass" {
		t.Fatalf("psql through the broker: %v: %q\nbroker log:\n%s", err, o, b.logs)
	}
	status := mustAs("sam", "breakglass", "status", "pg-admin")
	if !strings.Contains(status, "OPEN") || !strings.Contains(status, "confirmed by sam, carol") {
		t.Errorf("status while open:\n%s", status)
	}

	out = mustAs("sam", "breakglass", "close", "pg-admin", "--reason", "primary back")
	if !strings.Contains(out, "SEALED") || !strings.Contains(out, "old credential refused, new one accepted") {
		t.Fatalf("close:\n%s", out)
	}
	if err := direct(user, oldPW); err == nil {
		t.Fatal("the old password still logs in after close")
	}
	_, newPW := vault()
	if err := direct(user, newPW); err != nil {
		t.Fatalf("the new password from Vault: %v", err)
	}
	// The index holds the statement without its literal.
	sessions := decode[[]session](t, mustAs("sam", "sessions", "--contains", "current_user || $1", "-o", "json"))
	if len(sessions) != 1 || sessions[0].Protocol != "postgres" {
		t.Errorf("recorded break-glass session: %+v", sessions)
	}

	// A drill, confirmed by carol, ends to end; its report lists the steps.
	d := decode[bgDrillJSON](t, mustAs("sam", "drill", "run", "pg-admin", "--password-stdin", "--totp", code("sam", 1), "-o", "json"))
	mustAs("carol", "breakglass", "confirm", d.UnsealID, "--password-stdin", "--totp", code("carol", 1))
	deadline := time.Now().Add(30 * time.Second)
	for d.Outcome == "running" || d.Outcome == "" {
		if time.Now().After(deadline) {
			t.Fatalf("drill still running: %+v\n%s", d, b.logs)
		}
		time.Sleep(200 * time.Millisecond)
		d = decode[bgDrillJSON](t, mustAs("sam", "drill", "show", d.ID, "-o", "json"))
	}
	if d.Outcome != "passed" || len(d.Steps) != 7 || d.RecordingID == "" {
		t.Fatalf("drill: %+v", d)
	}
	q := schedule.Quarter(time.Now())
	rows, err := csv.NewReader(strings.NewReader(mustAs("sam", "drill", "report", "--quarter", q, "--format", "csv"))).ReadAll()
	if err != nil || len(rows) != 8 {
		t.Fatalf("CSV report: %v, %d rows", err, len(rows))
	}
	for i, s := range d.Steps {
		if rows[i+1][12] != s.Name || rows[i+1][16] != s.Outcome {
			t.Errorf("CSV row %d: %v", i+1, rows[i+1])
		}
	}
	text := mustAs("sam", "drill", "report", "--quarter", q)
	if !strings.Contains(text, d.ID) || !strings.Contains(text, "PASSED") || !strings.Contains(text, "verify") {
		t.Errorf("text report:\n%s", text)
	}
	if st := mustAs("carol", "drill", "status"); !strings.Contains(st, d.ID) || !strings.Contains(st, "passed") {
		t.Errorf("drill status:\n%s", st)
	}

	resp, err := readyClient.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`custos_breakglass_drill_overdue{account="pg-admin"} 0`, `custos_breakglass_drill_failures{quarter="` + q + `"} 0`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	want := []string{"requested by sam", "open for sam", "rotated and resealed", "drill " + d.ID}
	deadline = time.Now().Add(15 * time.Second)
	for _, w := range want {
		for {
			var found bool
			for _, msg := range emu.Messages("C0SECURITY") {
				found = found || strings.Contains(msg.Text, w)
			}
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no security notice with %q", w)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Slack cannot take a fresh second factor: the notice of each pending
	// unseal (the drill's too) hands custodians on to its page in the web UI.
	for _, id := range []string{u.ID, d.UnsealID} {
		var link []slacktest.Button
		for _, msg := range emu.Messages("C0SECURITY") {
			if strings.Contains(msg.Text, "custos breakglass confirm "+id) {
				link = msg.Buttons()
			}
		}
		if len(link) != 1 || link[0].URL != b.url+"/ui/breakglass/unseals/"+id || link[0].Text != "Review and confirm in Custos" {
			t.Errorf("notice of unseal %s: buttons %+v", id, link)
		}
	}
	if strings.Contains(b.logs.String(), oldPW) || strings.Contains(b.logs.String(), newPW) {
		t.Error("a break-glass password appears in the broker log")
	}
}
