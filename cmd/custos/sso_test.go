package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// ssoConfig: local users are only admin (a break-glass style account)
// and sam (security); everyone else comes from the provider, with the
// provider groups dbas and approvers mapped onto the policy groups.
const ssoConfig = `
listen: {http: "%[1]s", data_dir: "%[2]s"}
public_url: "http://%[1]s"
store: {driver: sqlite, path: "%[2]s/custos.db"}
users:
  - {name: admin, password: env:CUSTOS_E2E_PASSWORD}
  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: dbas, members: []}
  - {name: approvers, members: []}
  - {name: security, members: [sam]}
security_admins: [security]
identity:
  oidc:
    name: Sponsor IdP
    issuer: "%[3]s"
    client_id: custos
    client_secret: env:CUSTOS_OIDC_SECRET
    group_map: {dbas: dbas, approvers: approvers}
    allowed_groups: [dbas, approvers]
targets:
  - name: demo-pg
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
`

func newSSOBroker(t *testing.T, op *devstack.OIDC) *brokerProc {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", devstack.FreePort(t))
	cfg := filepath.Join(dir, "custos.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(ssoConfig, addr, dir, op.Issuer)), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{t: t, cfg: cfg, url: "http://" + addr, homes: map[string]string{},
		env: []string{"CUSTOS_OIDC_SECRET=" + op.Client("custos").Secret}}
	b.start()
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })
	return b
}

// home is user's CLI config directory.
func (b *brokerProc) home(user string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.homes[user]
	if !ok {
		h = b.t.TempDir()
		b.homes[user] = h
	}
	return h
}

// cliSSO runs custos login --sso (with extra flags) as user; signIn is
// handed the CLI's stderr as it prints and plays the browser. It returns
// the CLI's stdout, stderr and exit code.
func cliSSO(t *testing.T, b *brokerProc, user string, signIn func(stderr *bufio.Reader) error, flags ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, custosBin, append([]string{"login", "--sso", "--no-browser"}, flags...)...)
	cmd.Env = append(os.Environ(), "CUSTOS_URL="+b.url, "CUSTOS_CONFIG_DIR="+b.home(user))
	for _, kv := range b.env {
		if strings.HasPrefix(kv, "CUSTOS_CA_CERT=") { // a broker with its own TLS certificate
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	cmd.Stderr = io.MultiWriter(pw, &errb)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	signErr := make(chan error, 1)
	go func() {
		signErr <- signIn(bufio.NewReader(pr))
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Wait()
	pw.Close()
	if e := <-signErr; e != nil {
		t.Fatalf("sign-in as %s: %v\nstderr: %s\nbroker log:\n%s", user, e, errb.String(), b.logs)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

var authURLRe = regexp.MustCompile(`http://\S+/auth\?\S+`)

// browserLogin reads the sign-in URL the CLI prints and signs user in at
// the provider with a headless browser; the provider redirects it to the
// CLI's loopback listener. It returns that page's text.
func browserLogin(op *devstack.OIDC, user string, page *string) func(*bufio.Reader) error {
	return func(r *bufio.Reader) error {
		for {
			line, err := r.ReadString('\n')
			if u := authURLRe.FindString(line); u != "" {
				res, body, err := op.SignIn(context.Background(), devstack.NewBrowser(), u, user, op.User(user).Password)
				if err != nil {
					return err
				}
				if page != nil {
					*page = fmt.Sprintf("%d %s", res.StatusCode, body)
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("no sign-in URL printed: %w", err)
			}
		}
	}
}

type ssoStatus struct {
	User       string    `json:"user"`
	AuthMethod string    `json:"auth_method"`
	AuthTime   time.Time `json:"auth_time"`
	ExpiresAt  time.Time `json:"expires_at"`
	Groups     []string  `json:"groups"`
	Grants     []struct {
		ID     string `json:"id"`
		Target string `json:"target"`
	} `json:"grants"`
}

// custos login --sso against the real provider: the CLI receives the
// code on its loopback port, the broker redeems it and mints the token;
// the provider's groups decide who may request (alice, dbas) and approve
// (bob, approvers); custos status shows the method and the grant; custos
// logout revokes the token on the broker. A provider user outside the
// allowed groups, and one whose name is a local user's, are refused.
func TestSSOCLILoginDrivesPolicy(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{})
	b := newSSOBroker(t, op)

	var page string
	out, errs, code := cliSSO(t, b, "alice", browserLogin(op, "alice", &page))
	if code != 0 || !strings.Contains(out, "logged in as alice") {
		t.Fatalf("alice: exit %d: %s %s\nbroker log:\n%s", code, out, errs, b.logs)
	}
	if !strings.HasPrefix(page, "200 ") || !strings.Contains(page, "Signed in to Custos as alice") {
		t.Errorf("loopback page: %.300s", page)
	}
	if _, errs, code := cliSSO(t, b, "bob", browserLogin(op, "bob", nil)); code != 0 {
		t.Fatalf("bob: exit %d: %s", code, errs)
	}

	st := decode[ssoStatus](t, b.ok("alice", "status", "-o", "json"))
	if st.User != "alice" || st.AuthMethod != "sso" || st.AuthTime.IsZero() || len(st.Groups) != 1 || st.Groups[0] != "dbas" || len(st.Grants) != 0 {
		t.Fatalf("status: %+v", st)
	}

	// Group claims drive policy.
	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-7 sso", "-o", "json"))
	b.refused("bob", "not_requester", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-8")
	b.refused("alice", "self_approval", "approve", req.ID)
	d := decode[decided](t, b.ok("bob", "approve", req.ID, "-o", "json"))
	if d.Grant == nil || d.Grant.User != "alice" || d.Grant.Approvers[0] != "bob" {
		t.Fatalf("approval: %+v", d)
	}
	st = decode[ssoStatus](t, b.ok("alice", "status", "-o", "json"))
	if len(st.Grants) != 1 || st.Grants[0].ID != d.Grant.ID {
		t.Fatalf("status grants: %+v", st.Grants)
	}
	if text := b.ok("alice", "status"); !strings.Contains(text, "signed in: sso") || !strings.Contains(text, d.Grant.ID) {
		t.Errorf("status text:\n%s", text)
	}

	// Outside allowed_groups; and named like the local user admin.
	for _, who := range []string{"carol", "admin"} {
		out, errs, code := cliSSO(t, b, who, browserLogin(op, who, nil))
		if code == 0 || !strings.Contains(errs, "login_failed") {
			t.Errorf("%s: exit %d, out %q, err %q", who, code, out, errs)
		}
	}

	// A restart keeps SSO users: their tokens, groups and grants stand
	// (the start-up sweep ends only the access of users it does not know).
	b.stop(syscall.SIGTERM)
	b.start()
	st = decode[ssoStatus](t, b.ok("alice", "status", "-o", "json"))
	if st.User != "alice" || len(st.Groups) != 1 || len(st.Grants) != 1 || st.Grants[0].ID != d.Grant.ID {
		t.Fatalf("status after restart: %+v", st)
	}

	// logout revokes on the broker: a copy of the token is useless.
	tokFile := filepath.Join(b.home("alice"), "token.json")
	raw, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	var saved struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(raw, &saved)
	if got := whoamiStatus(t, b, saved.Token); got != http.StatusOK {
		t.Fatalf("saved token before logout: %d", got)
	}
	b.ok("alice", "logout")
	if _, err := os.Stat(tokFile); !os.IsNotExist(err) {
		t.Errorf("token file still there: %v", err)
	}
	if got := whoamiStatus(t, b, saved.Token); got != http.StatusUnauthorized {
		t.Errorf("token after logout: %d, want 401", got)
	}
	// The profile (broker URL) stays: status says not logged in, no usage error.
	if _, errs, code := b.runEnv("alice", "", nil, "status"); code == 0 || !strings.Contains(errs, "not logged in") {
		t.Errorf("status after logout: exit %d %s", code, errs)
	}
}

func whoamiStatus(t *testing.T, b *brokerProc, token string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// custos login --sso --device: the user approves the code at the
// provider from another "device"; the CLI gets its token.
func TestSSODeviceLogin(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{})
	b := newSSOBroker(t, op)
	codeRe := regexp.MustCompile(`enter the code\s+(\S+)`)
	approve := func(r *bufio.Reader) error {
		for {
			line, err := r.ReadString('\n')
			if m := codeRe.FindStringSubmatch(line); m != nil {
				return op.ApproveDevice(context.Background(), devstack.NewBrowser(), m[1], "bob", op.User("bob").Password)
			}
			if err != nil {
				return fmt.Errorf("no user code printed: %w", err)
			}
		}
	}
	out, errs, code := cliSSO(t, b, "bob", approve, "--device")
	if code != 0 || !strings.Contains(out, "logged in as bob") {
		t.Fatalf("device login: exit %d: %s %s\nbroker log:\n%s", code, out, errs, b.logs)
	}
	st := decode[ssoStatus](t, b.ok("bob", "status", "-o", "json"))
	if st.AuthMethod != "sso" || len(st.Groups) != 1 || st.Groups[0] != "approvers" {
		t.Fatalf("status: %+v", st)
	}
}

// A broker without identity.oidc says so, and the login page offers no
// provider.
func TestSSODisabled(t *testing.T) {
	b := newBroker(t, fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(t.TempDir(), "custos.db")))
	_, errs, code := b.run("alice", "", "login", "--sso", "--no-browser")
	if code != 4 || !strings.Contains(errs, "sso_disabled") {
		t.Fatalf("login --sso without a provider: exit %d %q", code, errs)
	}
	res, err := http.Get(b.url + "/api/v1/auth/sso")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	_ = json.NewDecoder(res.Body).Decode(&info)
	res.Body.Close()
	if info["enabled"] != false {
		t.Fatalf("sso info: %v", info)
	}
}
