package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/deploy/devstack"
)

// canaryConfig is a broker whose PostgreSQL target hashes bind parameters
// and whose security user signs in with a second factor.
const canaryConfig = `
listen:
  http: "127.0.0.1:%[1]d"
  postgres: "127.0.0.1:%[2]d"
  tls_cert: %[3]s/tls.crt
  tls_key: %[3]s/tls.key
  data_dir: %[3]s/data
store: {driver: sqlite, path: %[3]s/custos.db}
recording: {store: local, dir: %[3]s/recordings, retention: 1d}
vault: {address: "%[4]s", token: env:CUSTOS_CANARY_VAULT_TOKEN}
users:
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}
  - {name: bob, password: env:CUSTOS_E2E_PASSWORD}
  - {name: sam, password: env:CUSTOS_E2E_PASSWORD, totp_secret: env:CUSTOS_CANARY_TOTP}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob]}
  - {name: security, members: [sam]}
security_admins: [security]
targets:
  - name: demo-pg
    kind: postgres
    address: "%[5]s"
    postgres: {parameters: hash}
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
`

// TestCanarySecretsNeverLeak plants secrets where they pass through the
// broker (Vault tokens and the database passwords Vault issues, API and
// connection tokens, a TOTP code, a bind parameter the target's policy
// hashes, a literal in a statement, and wrong credentials a user might
// paste) and greps every place an operator or another user can read:
// the broker's log, the audit log, the session index and the rest of the
// state store, /metrics and /readyz, every API listing, and the errors
// clients see. None may hold any of them. The literal is in the encrypted
// recording, where its export shows it.
func TestCanarySecretsNeverLeak(t *testing.T) {
	for _, tool := range []string{"psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			devstack.Require(t, tool, "apt-get install postgresql-client")
		}
	}
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	vaultAudit := rawVaultAudit(t, v)

	canary := func(kind string) string {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		return "CANARY" + kind + hex.EncodeToString(b)
	}
	literal, bind := canary("LIT"), canary("BIND")
	wrongToken, wrongBearer, wrongPassword := canary("WRONGTOKEN"), canary("WRONGBEARER"), canary("WRONGPW")
	totpKey := make([]byte, 20)
	_, _ = rand.Read(totpKey)
	totpSecret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(totpKey)

	dir := t.TempDir()
	writeTLS(t, dir)
	httpPort, pgPort := devstack.FreePort(t), devstack.FreePort(t)
	cfg := filepath.Join(dir, "custos.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(canaryConfig, httpPort, pgPort, dir, v.Addr, pg.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{t: t, cfg: cfg, url: fmt.Sprintf("https://127.0.0.1:%d", httpPort), homes: map[string]string{},
		env: []string{"CUSTOS_E2E_PASSWORD=" + e2ePassword, "CUSTOS_CANARY_VAULT_TOKEN=" + v.BrokerToken,
			"CUSTOS_CANARY_TOTP=" + totpSecret, "CUSTOS_CA_CERT=" + filepath.Join(dir, "tls.crt")}}
	b.start()
	t.Cleanup(func() { b.stop(15) })
	b.login("alice", "bob")
	totp := identity.TOTP(totpKey, time.Now())
	if _, errs, code := b.run("sam", e2ePassword+"\n", "login", "--user", "sam", "--password-stdin", "--totp", totp); code != 0 {
		t.Fatalf("login sam: %s\n%s", errs, b.logs)
	}

	// What clients see, errors included, is collected too.
	var seen strings.Builder
	note := func(where, s string) { fmt.Fprintf(&seen, "\n== %s\n%s", where, s) }

	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "INC-1", "-o", "json"))
	b.ok("bob", "approve", req.ID)
	dbToken := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))

	psql := func(password, sql string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", pgPort), "-c", sql)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
		o, _ := cmd.CombinedOutput()
		return string(o)
	}
	if out := psql(dbToken, "select 'prefix-"+literal+"' as c"); !strings.Contains(out, literal) {
		t.Fatalf("psql through the broker: %q\n%s", out, b.logs)
	}
	// A bind parameter, hashed by the target's policy.
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cc, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", pgPort))
		if err != nil {
			t.Fatal(err)
		}
		cc.Password = dbToken
		cc.TLSConfig = &tls.Config{InsecureSkipVerify: true}
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			t.Fatalf("pgx through the broker: %v", err)
		}
		defer conn.Close(ctx)
		var got string
		if err := conn.QueryRow(ctx, "select $1::text", bind).Scan(&got); err != nil || got != bind {
			t.Fatalf("bind through the broker: %q %v", got, err)
		}
	}()
	// Wrong credentials a user might paste: refused, and not repeated.
	note("psql with a wrong token", psql(wrongToken, "select 1"))
	_, errs, _ := b.run("mallory", wrongPassword+"\n", "login", "--user", "alice", "--password-stdin")
	note("login with a wrong password", errs)
	note("API with a wrong bearer", apiGet(t, b.url, wrongBearer, "/api/v1/whoami"))

	// The session ends and is indexed.
	sessions := waitSessions(t, b, 2)

	// Every secret the broker handled.
	secrets := map[string]string{
		"statement literal": literal, "bind parameter": bind, "connection token": dbToken,
		"wrong connection token": wrongToken, "wrong bearer": wrongBearer, "wrong password": wrongPassword,
		"user password": e2ePassword, "TOTP secret": totpSecret,
		"Vault broker token": v.BrokerToken, "Vault root token": v.Token,
	}
	for _, u := range []string{"alice", "bob", "sam"} {
		secrets["API token of "+u] = savedToken(t, b, u)
	}
	for i, pw := range vaultIssuedPasswords(t, vaultAudit) {
		secrets[fmt.Sprintf("Vault-issued database password %d", i+1)] = pw
	}
	if len(secrets) < 14 {
		t.Fatalf("the raw Vault audit log showed no issued database password: %d secrets", len(secrets))
	}

	// The places to look.
	sam := savedToken(t, b, "sam")
	note("broker log", b.logs.String())
	note("audit log", b.ok("sam", "audit", "-o", "json"))
	note("sessions", b.ok("sam", "sessions", "-o", "json"))
	for _, p := range []string{"/api/v1/sessions", "/api/v1/requests", "/api/v1/grants", "/api/v1/access?target=demo-pg",
		"/api/v1/audit", "/api/v1/audit/verify", "/api/v1/targets", "/api/v1/tokens", "/api/v1/whoami", "/api/v1/audit/views",
		"/metrics", "/readyz", "/healthz"} {
		note(p, apiGet(t, b.url, sam, p))
	}
	for _, s := range sessions {
		note("session "+s.ID, apiGet(t, b.url, sam, "/api/v1/sessions/"+s.ID))
		note("verify "+s.ID, apiGet(t, b.url, sam, "/api/v1/sessions/"+s.ID+"/verify"))
	}
	var views []struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal([]byte(apiGet(t, b.url, sam, "/api/v1/audit/views")), &views)
	for _, vw := range views {
		note("view "+vw.Name, apiGet(t, b.url, sam, "/api/v1/audit/views/"+vw.Name+"?target=demo-pg&user=alice&actor=alice"))
	}
	// The state store as it lies on disk: audit records, the session
	// index, tokens (kept only as hashes).
	for _, f := range []string{"custos.db", "custos.db-wal"} {
		if raw, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			note(f, string(raw))
		}
	}

	text := seen.String()
	for what, secret := range secrets {
		if i := strings.Index(text, secret); i >= 0 {
			t.Errorf("%s appears where it must not:\n%s", what, context30(text, i))
		}
	}
	// The TOTP code is six digits: it must not stand as a number of its own.
	if m := regexp.MustCompile(`(^|[^0-9])` + totp + `([^0-9]|$)`).FindStringIndex(text); m != nil {
		t.Errorf("the TOTP code appears:\n%s", context30(text, m[0]))
	}

	// The literal is kept where it belongs: the encrypted recording.
	inExport := false
	for _, s := range sessions {
		if strings.Contains(b.ok("sam", "export", s.ID, "--format", "jsonl"), literal) {
			inExport = true
		}
	}
	if !inExport {
		t.Errorf("no recording's export holds the statement's literal")
	}
}

// context30 shows where in the collected text a secret was found.
func context30(text string, i int) string {
	head := strings.LastIndex(text[:i], "\n== ")
	where := ""
	if head >= 0 {
		where = strings.SplitN(text[head+4:], "\n", 2)[0]
	}
	lo, hi := max(i-120, 0), min(i+120, len(text))
	return fmt.Sprintf("in %s: …%q…", where, text[lo:hi])
}

func apiGet(t *testing.T, base, token, path string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := readyClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

// savedToken reads the API token the CLI saved for user.
func savedToken(t *testing.T, b *brokerProc, user string) string {
	t.Helper()
	b.mu.Lock()
	home := b.homes[user]
	b.mu.Unlock()
	raw, err := os.ReadFile(filepath.Join(home, "token.json"))
	if err != nil {
		t.Fatalf("token of %s: %v", user, err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || tok.Token == "" {
		t.Fatalf("token of %s: %v", user, err)
	}
	return tok.Token
}

// rawVaultAudit turns on a Vault audit device that logs responses in
// clear, so the test learns the database passwords Vault gives the
// broker; it is turned off when the test ends.
func rawVaultAudit(t *testing.T, v *devstack.Vault) string {
	t.Helper()
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.Token)
	path := filepath.Join(t.TempDir(), "vault-audit.log")
	name := "canary-" + strings.ToLower(hex.EncodeToString([]byte(t.Name()))[:8])
	if err := c.Sys().EnableAuditWithOptions(name, &vaultapi.EnableAuditOptions{Type: "file",
		Options: map[string]string{"file_path": path, "log_raw": "true"}}); err != nil {
		t.Fatalf("vault audit device: %v", err)
	}
	t.Cleanup(func() { _ = c.Sys().DisableAudit(name) })
	return path
}

// vaultIssuedPasswords reads the passwords of database credentials Vault
// issued from its raw audit log.
func vaultIssuedPasswords(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var rec struct {
			Type     string `json:"type"`
			Response struct {
				Data map[string]any `json:"data"`
			} `json:"response"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Type != "response" {
			continue
		}
		if pw, ok := rec.Response.Data["password"].(string); ok && len(pw) >= 12 {
			out = append(out, pw)
		}
	}
	return out
}
