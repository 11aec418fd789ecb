package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// runEnv runs the real CLI as user with env instead of the harness's
// CUSTOS_URL (and with none of the caller's CUSTOS_URL or CUSTOS_CA_CERT).
func (b *brokerProc) runEnv(user, stdin string, env []string, args ...string) (string, string, int) {
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
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CUSTOS_URL=") && !strings.HasPrefix(kv, "CUSTOS_CA_CERT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, "CUSTOS_CONFIG_DIR="+home), env...)
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

type cliError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Exit    int    `json:"exit"`
	} `json:"error"`
}

// wantExit runs the CLI with -o json and checks the exit code and the
// JSON error on stderr.
func wantExit(t *testing.T, b *brokerProc, user string, env []string, exit int, code string, args ...string) cliError {
	t.Helper()
	out, errs, got := b.runEnv(user, "", env, append(args, "-o", "json")...)
	if got != exit {
		t.Fatalf("custos %v: exit %d, want %d\nstdout %q\nstderr %q", args, got, exit, out, errs)
	}
	e := decode[cliError](t, errs)
	if e.Error.Code != code || e.Error.Exit != exit || e.Error.Message == "" {
		t.Fatalf("custos %v: error %+v, want code %s exit %d", args, e.Error, code, exit)
	}
	return e
}

// TestCLIProfile: the first login with --url remembers the broker, so
// later commands need neither --url nor $CUSTOS_URL; a flag beats the
// environment, which beats the profile; logout keeps the URL.
func TestCLIProfile(t *testing.T) {
	b := newBroker(t, fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(t.TempDir(), "custos.db")))

	// Nothing saved yet: a usage error that says what to do.
	e := wantExit(t, b, "alice", nil, 2, "usage", "whoami")
	if !strings.Contains(e.Error.Message, "--url") {
		t.Fatalf("no URL: %q", e.Error.Message)
	}
	if _, errs, code := b.runEnv("alice", e2ePassword+"\n", nil, "login", "--url", b.url, "--user", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("login --url: exit %d: %s", code, errs)
	}
	if out, errs, code := b.runEnv("alice", "", nil, "whoami"); code != 0 || !strings.HasPrefix(out, "alice ") {
		t.Fatalf("whoami with the saved profile: exit %d: %q %q", code, out, errs)
	}

	// Precedence: $CUSTOS_URL beats the profile (a dead port is
	// unavailable), --url beats $CUSTOS_URL.
	dead := []string{fmt.Sprintf("CUSTOS_URL=http://127.0.0.1:%d", devstack.FreePort(t))}
	wantExit(t, b, "alice", dead, 3, "unauthenticated", "whoami") // the token belongs to the profile's broker
	if out, errs, code := b.runEnv("alice", "", dead, "whoami", "--url", b.url); code != 0 || !strings.HasPrefix(out, "alice ") {
		t.Fatalf("--url over $CUSTOS_URL: exit %d: %q %q", code, out, errs)
	}
	if _, errs, code := b.runEnv("alice", e2ePassword+"\n", dead, "login", "--user", "alice", "--password-stdin"); code != 5 {
		t.Fatalf("login to the dead $CUSTOS_URL: exit %d, want 5: %s", code, errs)
	}

	// logout revokes the token and keeps the URL: the next call says
	// "log in", not "no URL", and login needs no --url.
	if out, errs, code := b.runEnv("alice", "", nil, "logout"); code != 0 || !strings.Contains(out, "logged out") || errs != "" {
		t.Fatalf("logout: exit %d: %q %q", code, out, errs)
	}
	e = wantExit(t, b, "alice", nil, 3, "unauthenticated", "whoami")
	if !strings.Contains(e.Error.Message, "custos login") {
		t.Fatalf("after logout: %q", e.Error.Message)
	}
	if _, errs, code := b.runEnv("alice", e2ePassword+"\n", nil, "login", "--user", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("login with the saved URL: exit %d: %s", code, errs)
	}
	b.ok("alice", "whoami")
	// The revoked token is audited as refused when presented again: the
	// old token was really revoked, not only deleted here.
	recs := b.ok("alice", "tokens", "-o", "json")
	if n := strings.Count(recs, `"kind": "api"`); n != 1 {
		t.Fatalf("after logout and login alice has %d API tokens:\n%s", n, recs)
	}
}

// TestCLITargetsAndExitCodes: custos targets lists what the caller may
// request, nothing more; errors follow the documented exit codes and
// honour -o json.
func TestCLITargetsAndExitCodes(t *testing.T) {
	b := newBroker(t, fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(t.TempDir(), "custos.db")))
	b.login("alice", "bob")
	env := []string{"CUSTOS_URL=" + b.url}

	type role struct {
		Name        string `json:"name"`
		MaxDuration string `json:"max_duration"`
		Approvals   int    `json:"approvals"`
		Reason      bool   `json:"reason_required"`
	}
	type target struct {
		Name  string `json:"name"`
		Kind  string `json:"kind"`
		Roles []role `json:"roles"`
	}
	ts := decode[[]target](t, b.ok("alice", "targets", "-o", "json"))
	if len(ts) != 1 || ts[0].Name != "demo-pg" || ts[0].Kind != "postgres" || len(ts[0].Roles) != 3 {
		t.Fatalf("alice's targets: %+v", ts)
	}
	if r := ts[0].Roles[1]; r.Name != "readwrite" || r.Approvals != 2 || r.MaxDuration != "1h0m0s" || !r.Reason {
		t.Fatalf("readwrite: %+v", r)
	}
	table := b.ok("alice", "targets")
	if !strings.Contains(table, "TARGET") || !regexpLine(table, "demo-pg", "postgres", "readwrite", "2", "1h0m0s", "reason") {
		t.Fatalf("targets table:\n%s", table)
	}
	// bob approves but may request nothing.
	if got := decode[[]target](t, b.ok("bob", "targets", "-o", "json")); len(got) != 0 {
		t.Fatalf("bob may request nothing, listed %+v", got)
	}
	if out := b.ok("bob", "targets"); !strings.Contains(out, "no targets you may request") {
		t.Fatalf("bob's empty list: %q", out)
	}

	// Exit codes through the real broker.
	wantExit(t, b, "bob", env, 4, "not_found", "approve", "req_doesnotexist")
	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "INC-1", "-o", "json"))
	wantExit(t, b, "alice", env, 3, "self_approval", "approve", req.ID)
	wantExit(t, b, "bob", env, 3, "not_requester", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "x")
	wantExit(t, b, "alice", env, 2, "duration_exceeds_max", "request", "demo-pg", "--role", "readonly", "--for", "5h", "--reason", "x")
	wantExit(t, b, "alice", env, 2, "usage", "targets", "--no-such-flag")
	wantExit(t, b, "alice", env, 2, "usage", "no-such-command")
	// Text mode keeps the one-line message.
	if _, errs, code := b.run("bob", "", "approve", "req_doesnotexist"); code != 4 || !strings.HasPrefix(errs, "custos: ") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("text error: exit %d %q", code, errs)
	}
}

// regexpLine reports whether one line of s holds every field in order.
func regexpLine(s string, fields ...string) bool {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == len(fields) && strings.Join(f, " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}
