package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// custosBin is the custos binary built once for the end-to-end tests.
var custosBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "custos-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	custosBin = filepath.Join(dir, "custos")
	if out, err := exec.Command("go", "build", "-o", custosBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build custos: %v\n%s", err, out)
		os.Exit(1)
	}
	code := devstack.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const e2ePassword = "correct horse battery staple"

// e2eConfig is a broker config for the lifecycle tests; %s are the HTTP
// address, data dir and store section.
const e2eConfig = `
listen: {http: "%s", data_dir: "%s"}
store: %s
users:
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}
  - {name: bob, password: env:CUSTOS_E2E_PASSWORD}
  - {name: carol, password: env:CUSTOS_E2E_PASSWORD}
  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob, carol]}
  - {name: security, members: [sam]}
security_admins: [security]
targets:
  - name: demo-pg
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
      - name: readwrite
        policy: {requesters: [dbas], approvers: [approvers], approvals: 2, max_duration: 1h, require_reason: true}
      - name: hurried
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, request_ttl: 2s}
`

// syncBuffer collects a broker's output; the process writes while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// readyClient polls /readyz; test brokers use self-signed certificates.
var readyClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// brokerProc is one running `custos serve`.
type brokerProc struct {
	t     *testing.T
	cfg   string
	url   string
	cmd   *exec.Cmd
	logs  *syncBuffer
	done  chan struct{}
	mu    sync.Mutex
	homes map[string]string
	// env is added to the broker's and the CLI's environment.
	env []string
	// bin is the binary `serve` runs. Default: custosBin.
	bin string
}

func newBroker(t *testing.T, storeSection string) *brokerProc {
	dir := t.TempDir()
	port := devstack.FreePort(t)
	cfg := filepath.Join(dir, "custos.yaml")
	body := fmt.Sprintf(e2eConfig, fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "data"), storeSection)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{t: t, cfg: cfg, url: fmt.Sprintf("http://127.0.0.1:%d", port), homes: map[string]string{}}
	b.start()
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })
	return b
}

func (b *brokerProc) start() {
	b.t.Helper()
	b.logs = &syncBuffer{}
	bin := custosBin
	if b.bin != "" {
		bin = b.bin
	}
	b.cmd = exec.Command(bin, "serve", "--config", b.cfg)
	b.cmd.Env = append(append(os.Environ(), "CUSTOS_E2E_PASSWORD="+e2ePassword), b.env...)
	b.cmd.Stdout, b.cmd.Stderr = b.logs, b.logs
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.done = make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := readyClient.Get(b.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-b.done:
			b.t.Fatalf("broker exited:\n%s", b.logs)
		case <-time.After(100 * time.Millisecond):
		}
	}
	b.t.Fatalf("broker not ready:\n%s", b.logs)
}

func (b *brokerProc) stop(sig syscall.Signal) {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// run runs the real CLI as user (each user has their own token directory)
// and returns stdout, stderr and the exit code.
func (b *brokerProc) run(user string, stdin string, args ...string) (string, string, int) {
	b.t.Helper()
	b.mu.Lock()
	home, ok := b.homes[user]
	if !ok {
		home = b.t.TempDir()
		b.homes[user] = home
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, custosBin, args...)
	cmd.Env = append(append(os.Environ(), "CUSTOS_URL="+b.url, "CUSTOS_CONFIG_DIR="+home), b.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("run custos %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs the CLI and fails the test on a non-zero exit.
func (b *brokerProc) ok(user string, args ...string) string {
	b.t.Helper()
	out, errs, code := b.run(user, "", args...)
	if code != 0 {
		b.t.Fatalf("custos %v as %s: exit %d: %s\nbroker log:\n%s", args, user, code, errs, b.logs)
	}
	return out
}

// refused runs the CLI and expects a one-line error naming code.
func (b *brokerProc) refused(user, code string, args ...string) {
	b.t.Helper()
	_, errs, exit := b.run(user, "", args...)
	if exit == 0 || !strings.Contains(errs, code) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		b.t.Fatalf("custos %v as %s: want a one-line %s error, got exit %d: %q", args, user, code, exit, errs)
	}
}

func (b *brokerProc) login(users ...string) {
	b.t.Helper()
	for _, u := range users {
		if _, errs, code := b.run(u, e2ePassword+"\n", "login", "--user", u, "--password-stdin"); code != 0 {
			b.t.Fatalf("login %s: %s\n%s", u, errs, b.logs)
		}
	}
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

type jsonRequest struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Approvals []struct {
		By string    `json:"by"`
		At time.Time `json:"at"`
	} `json:"approvals"`
	ExpiresAt time.Time `json:"expires_at"`
	GrantID   string    `json:"grant_id"`
}

type jsonGrant struct {
	ID        string    `json:"id"`
	RequestID string    `json:"request_id"`
	User      string    `json:"user"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	State     string    `json:"state"`
	Approvers []string  `json:"approvers"`
}

type decided struct {
	Request jsonRequest `json:"request"`
	Grant   *jsonGrant  `json:"grant"`
}

// storeSections runs f against each state store: SQLite in a temp file
// and the harness's real PostgreSQL.
func storeSections(t *testing.T, f func(t *testing.T, store string)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(t.TempDir(), "custos.db")))
	})
	t.Run("postgres", func(t *testing.T) {
		pg := devstack.StartPostgres(t)
		db := pg.CreateDatabase(t, "e2e")
		f(t, fmt.Sprintf("{driver: postgres, dsn: %q}", pg.DSN(db)))
	})
}

func TestAccessLifecycleEndToEnd(t *testing.T) {
	storeSections(t, func(t *testing.T, store string) {
		b := newBroker(t, store)
		b.login("alice", "bob", "carol", "sam")

		// alice asks; her own approval is refused; bob approves.
		req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "3s", "--reason", "INC-123 replication", "-o", "json"))
		if req.State != "pending" {
			t.Fatalf("new request is %s", req.State)
		}
		b.refused("alice", "self_approval", "approve", req.ID)
		b.refused("carol", "not_found", "approve", "req_doesnotexist")
		d := decode[decided](t, b.ok("bob", "approve", req.ID, "--comment", "ok", "-o", "json"))
		g := d.Grant
		if g == nil || d.Request.State != "approved" || g.User != "alice" || g.Approvers[0] != "bob" {
			t.Fatalf("approval did not grant: %+v", d)
		}
		if got := g.EndsAt.Sub(g.StartsAt); got != 3*time.Second {
			t.Fatalf("grant lasts %v, want 3s", got)
		}
		if !g.StartsAt.Equal(d.Request.Approvals[0].At) {
			t.Fatalf("grant starts %v, approval at %v", g.StartsAt, d.Request.Approvals[0].At)
		}
		active := decode[[]jsonGrant](t, b.ok("alice", "grants", "--active", "-o", "json"))
		if len(active) != 1 || active[0].ID != g.ID {
			t.Fatalf("active grants: %+v", active)
		}
		b.refused("carol", "already_decided", "approve", req.ID)

		// 2-of-N: one approver is not enough, nor is the same one twice.
		rw := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readwrite", "--for", "10m", "--reason", "INC-124", "-o", "json"))
		first := decode[decided](t, b.ok("bob", "approve", rw.ID, "-o", "json"))
		if first.Grant != nil || first.Request.State != "pending" || len(first.Request.Approvals) != 1 {
			t.Fatalf("one approval of two granted access: %+v", first)
		}
		b.refused("bob", "duplicate_approval", "approve", rw.ID)
		second := decode[decided](t, b.ok("carol", "approve", rw.ID, "-o", "json"))
		if second.Grant == nil || len(second.Grant.Approvers) != 2 {
			t.Fatalf("two distinct approvals did not grant: %+v", second)
		}

		// The short grant expires on time, within a second of its end.
		waitState(t, b, "alice", g.ID, "expired", g.EndsAt.Add(time.Second))

		// Revocation and expiry survive a restart: revoke the readwrite
		// grant, leave a request and a short grant pending, kill the
		// broker, and let both fall due while it is down.
		b.ok("sam", "revoke", second.Grant.ID, "--reason", "done early")
		hurried := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "hurried", "--for", "1m", "-o", "json"))
		ro := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "2s", "--reason", "INC-125", "-o", "json"))
		short := decode[decided](t, b.ok("bob", "approve", ro.ID, "-o", "json")).Grant
		b.stop(syscall.SIGKILL)
		time.Sleep(time.Until(short.EndsAt.Add(500 * time.Millisecond)))
		if time.Now().Before(hurried.ExpiresAt) {
			time.Sleep(time.Until(hurried.ExpiresAt.Add(100 * time.Millisecond)))
		}
		b.start()
		waitState(t, b, "alice", short.ID, "expired", time.Now().Add(time.Second))
		if got := decode[jsonGrant](t, getGrantJSON(t, b, second.Grant.ID)); got.State != "revoked" {
			t.Fatalf("revoked grant is %s after restart", got.State)
		}
		waitRequestState(t, b, hurried.ID, "expired", time.Now().Add(time.Second))

		// A revoked token is refused with a precise code, and audited.
		toks := decode[[]struct {
			ID   string `json:"id"`
			Kind string `json:"kind"`
		}](t, b.ok("carol", "tokens", "-o", "json"))
		if len(toks) != 1 || toks[0].Kind != "api" {
			t.Fatalf("carol's tokens: %+v", toks)
		}
		b.ok("carol", "tokens", "revoke", toks[0].ID)
		b.refused("carol", "token_invalid", "whoami")

		// Every step is in the audit log, and the chain verifies.
		out := b.ok("sam", "audit", "verify")
		if !strings.Contains(out, "audit chain intact") {
			t.Fatalf("audit verify: %s", out)
		}
		type rec struct{ Action, Outcome, Actor string }
		recs := decode[[]rec](t, b.ok("sam", "audit", "list", "--limit", "1000", "-o", "json"))
		seen := map[string]bool{}
		for _, r := range recs {
			seen[r.Action+":"+r.Outcome+":"+r.Actor] = true
		}
		for _, want := range []string{
			"request.create:success:alice", "request.approve:denied:alice", "request.approve:success:bob",
			"grant.create:success:system", "grant.expire:success:system", "request.approve:denied:bob",
			"grant.revoke:success:sam", "request.expire:success:system", "request.approve:success:carol",
			"auth.token:denied:anonymous",
		} {
			if !seen[want] {
				t.Errorf("audit log lacks %s", want)
			}
		}
	})
}

func getGrantJSON(t *testing.T, b *brokerProc, id string) string {
	t.Helper()
	var out string
	for _, g := range decode[[]json.RawMessage](t, b.ok("sam", "grants", "-o", "json")) {
		if strings.Contains(string(g), `"id": "`+id+`"`) || strings.Contains(string(g), `"id":"`+id+`"`) {
			out = string(g)
		}
	}
	if out == "" {
		t.Fatalf("grant %s not listed", id)
	}
	return out
}

func waitState(t *testing.T, b *brokerProc, user, grantID, want string, deadline time.Time) {
	t.Helper()
	for {
		var state string
		for _, g := range decode[[]jsonGrant](t, b.ok(user, "grants", "-o", "json")) {
			if g.ID == grantID {
				state = g.State
			}
		}
		if state == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant %s is %q, want %s by %s", grantID, state, want, deadline.Format(time.RFC3339Nano))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitRequestState(t *testing.T, b *brokerProc, id, want string, deadline time.Time) {
	t.Helper()
	for {
		var state string
		for _, r := range decode[[]jsonRequest](t, b.ok("alice", "requests", "--mine", "-o", "json")) {
			if r.ID == id {
				state = r.State
			}
		}
		if state == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s is %q, want %s", id, state, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
