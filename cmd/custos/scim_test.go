package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

const scimTestToken = "scim-e2e-token-0123456789abcdefghijklmnopqrstuv"

// scimClient calls the broker's SCIM endpoints with the SCIM token,
// trusting the stack's certificate.
type scimClient struct {
	t     *testing.T
	base  string
	token string
	hc    *http.Client
}

func newSCIMClient(t *testing.T, b *brokerProc, dir string) *scimClient {
	pem, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &scimClient{t: t, base: b.url + "/scim/v2", token: scimTestToken,
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

func (c *scimClient) do(method, path, token string, body any) (int, map[string]any) {
	c.t.Helper()
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req, _ := http.NewRequest(method, strings.TrimSuffix(c.base, "/scim/v2")+path, &buf)
	req.Header.Set("Content-Type", "application/scim+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (c *scimClient) ok(method, path string, body any, want int) map[string]any {
	c.t.Helper()
	code, out := c.do(method, "/scim/v2"+path, c.token, body)
	if code != want {
		c.t.Fatalf("%s %s: %d %v", method, path, code, out)
	}
	return out
}

// TestSCIMDeactivationEndsPsqlSession: a user provisioned by SCIM (as
// Okta does it: create, then a group named like the policy group dbas)
// signs in by SSO with the same name, requests at once, gets approved and
// keeps token and grant across a restart, holds a psql session through
// the proxy; the provider's deactivation
// (PATCH replace active:false, Okta's shape) ends that session within one
// second, revokes the token and the grant, with audit records. A SCIM
// token does not open /api/v1, and a user's token does not open /scim.
func TestSCIMDeactivationEndsPsqlSession(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{Users: []devstack.OIDCUser{
		{ID: "u-dave", Username: "dave", Password: "dave-sso-pw", Email: "dave@sponsor.example", Name: "Dave"}}})
	var publicURL string
	st := startFullStack(t, stackOptions{edit: func(cfg string) string {
		port := strings.TrimSuffix(strings.SplitN(strings.SplitN(cfg, `http: "127.0.0.1:`, 2)[1], "\n", 2)[0], `"`)
		publicURL = "https://127.0.0.1:" + port
		return cfg + fmt.Sprintf(`public_url: %q
identity:
  oidc:
    issuer: %q
    client_id: custos
    client_secret: env:CUSTOS_OIDC_SECRET
  scim:
    token: env:CUSTOS_SCIM_TOKEN
`, publicURL, op.Issuer)
	}, env: []string{"CUSTOS_OIDC_SECRET=" + op.Client("custos").Secret, "CUSTOS_SCIM_TOKEN=" + scimTestToken}})
	b, pg := st.b, st.pg
	sc := newSCIMClient(t, b, st.dir)

	// Okta: look up, create, put into the group dbas.
	if out := sc.ok("GET", `/Users?filter=userName+eq+%22dave%22`, nil, 200); out["totalResults"].(float64) != 0 {
		t.Fatalf("lookup: %v", out)
	}
	dave := sc.ok("POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": "dave", "name": map[string]string{"givenName": "Dave"},
		"emails": []map[string]any{{"primary": true, "value": "dave@sponsor.example", "type": "work"}}, "active": true}, 201)["id"].(string)
	sc.ok("POST", "/Groups", map[string]any{"displayName": "dbas", "members": []map[string]string{{"value": dave}}}, 201)

	// dave signs in by SSO and can request at once.
	if out, errs, code := cliSSO(t, b, "dave", browserLogin(op, "dave", nil)); code != 0 {
		t.Fatalf("dave sso: exit %d: %s %s\nbroker log:\n%s", code, out, errs, b.logs)
	}
	req := decode[jsonRequest](t, b.ok("dave", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-90 scim", "-o", "json"))
	b.ok("bob", "approve", req.ID)
	// A restart keeps the SCIM user: the start-up sweep spares them, so
	// their token and grant stand.
	b.stop(syscall.SIGTERM)
	b.start()
	token := strings.TrimSpace(b.ok("dave", "db", "token", "demo-pg"))

	// The provider puts dave into a group named like the security_admins
	// group: a membership, not security-admin rights.
	sec := sc.ok("POST", "/Groups", map[string]any{"displayName": "security"}, 201)["id"].(string)
	sc.ok("PATCH", "/Groups/"+sec, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "add", "path": "members", "value": []map[string]string{{"value": dave}}}}}, 200)
	b.refused("dave", "forbidden", "users")
	b.refused("dave", "forbidden", "audit", "list")

	// Attackers: the SCIM token on /api/v1, dave's token on /scim.
	if code, _ := sc.do("GET", "/api/v1/whoami", scimTestToken, nil); code != 401 {
		t.Errorf("SCIM token on /api/v1: %d", code)
	}
	if code, _ := sc.do("GET", "/scim/v2/Users", strings.TrimSpace(readToken(t, b.home("dave"))), nil); code != 401 {
		t.Errorf("user token on /scim: %d", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan string, 1)
	go func() {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=dave sslmode=require", st.pgPort),
			"-c", "select pg_sleep(40)")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
		out, _ := cmd.CombinedOutput()
		done <- string(out)
	}()
	waitStatement(ctx, t, pg, "select pg_sleep(40)", b)

	// Okta deactivates.
	at := time.Now()
	sc.ok("PATCH", "/Users/"+dave, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "replace", "value": map[string]any{"active": false}}}}, 200)
	answered := time.Since(at)
	select {
	case out := <-done:
		took := time.Since(at)
		t.Logf("SCIM PATCH answered after %v; psql session ended %v after the PATCH was sent", answered, took)
		if !strings.Contains(out, "access revoked") {
			t.Fatalf("psql after deactivation: %q\nbroker log:\n%s", out, b.logs)
		}
		if took > 1500*time.Millisecond {
			t.Fatalf("session ended %v after deactivation, want within 1 s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("psql still running 10 s after deactivation\nbroker log:\n%s", b.logs)
	}
	b.refused("dave", "token_invalid", "whoami")
	// custos users: dave is still listed, from SCIM and SSO, disabled.
	b.refused("bob", "forbidden", "users")
	type row struct {
		Name         string     `json:"name"`
		Sources      []string   `json:"sources"`
		Enabled      bool       `json:"enabled"`
		Factors      []string   `json:"factors"`
		LastActivity *time.Time `json:"last_activity"`
	}
	users := decode[[]row](t, b.ok("sam", "users", "-o", "json"))
	byName := map[string]row{}
	for _, u := range users {
		byName[u.Name] = u
	}
	if d := byName["dave"]; d.Enabled || !slices.Equal(d.Sources, []string{"sso", "scim"}) || !slices.Equal(d.Factors, []string{"sso"}) || d.LastActivity == nil {
		t.Errorf("custos users, dave: %+v", d)
	}
	if a := byName["alice"]; !a.Enabled || !slices.Equal(a.Sources, []string{"config"}) || !slices.Equal(a.Factors, []string{"password"}) {
		t.Errorf("custos users, alice: %+v", a)
	}
	if text := b.ok("sam", "users"); !strings.Contains(text, "LAST ACTIVITY") || !strings.Contains(text, "disabled") {
		t.Errorf("custos users:\n%s", text)
	}
	for action, want := range map[string]string{"scim.user.deactivate": "dave", "token.revoke": "deactivated by SCIM", "grant.revoke": "deactivated by SCIM"} {
		if a := b.ok("sam", "audit", "list", "--action", action); !strings.Contains(a, want) {
			t.Errorf("audit %s: want %q in\n%s", action, want, a)
		}
	}
}

// readToken is the API token the CLI saved in home.
func readToken(t *testing.T, home string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(home, "token.json"))
	if err != nil {
		t.Fatal(err)
	}
	var saved struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &saved); err != nil || saved.Token == "" {
		t.Fatalf("token.json: %v", err)
	}
	return saved.Token
}
