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
	// Shell completion: the scripts, and IDs and names from the broker.
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out := b.ok("alice", "completion", sh); !strings.Contains(out, "custos") {
			t.Fatalf("completion %s: %.200s", sh, out)
		}
	}
	if out := b.ok("bob", "__complete", "approve", ""); !strings.HasPrefix(out, req.ID+"\n") {
		t.Fatalf("completing approve: %q", out)
	}
	if out := b.ok("alice", "__complete", "request", "demo"); !strings.HasPrefix(out, "demo-pg\n") {
		t.Fatalf("completing request: %q", out)
	}
	if out := b.ok("alice", "__complete", "db", "connect", ""); !strings.HasPrefix(out, "demo-pg\n") {
		t.Fatalf("completing db connect: %q", out)
	}
	if out := b.ok("bob", "__complete", "request", ""); strings.Contains(out, "demo-pg") {
		t.Fatalf("bob may request nothing, completion offers %q", out)
	}

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

// checkSSHTooling: the Host block custos ssh-config prints is used as is
// by the real ssh; --write keeps the rest of ~/.ssh/config and never
// touches ~/.ssh/id_*; custos ssh runs ssh with the right port, user and
// certificate and exits with its status; login --ssh does not replace a
// certificate another CA issued without --force. alice holds a grant
// for demo-ssh, whose upstream login is login; laptop is a key the
// broker certified before.
func checkSSHTooling(t *testing.T, b *brokerProc, login, laptop string) {
	t.Helper()
	home := t.TempDir()
	env := append(append([]string{}, b.env...), "CUSTOS_URL="+b.url, "HOME="+home)
	realSSH := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ssh", append([]string{"-o", "BatchMode=yes"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		o, err := cmd.CombinedOutput()
		return string(o), err
	}

	// The profile remembered the broker and the CA file given at login:
	// HTTPS with neither --url, $CUSTOS_URL nor $CUSTOS_CA_CERT.
	if out, errs, code := b.runEnv("alice", "", []string{"HOME=" + home}, "whoami"); code != 0 || !strings.HasPrefix(out, "alice ") {
		t.Fatalf("whoami over HTTPS from the profile alone: exit %d: %q %q", code, out, errs)
	}
	conf, errs, code := b.runEnv("alice", "", env, "ssh-config")
	if code != 0 || !strings.Contains(conf, "Host demo-ssh\n") || !strings.Contains(conf, "  User demo-ssh\n") ||
		!strings.Contains(conf, "  HostKeyAlias custos-127.0.0.1-") || strings.Contains(conf, "demo-pg") {
		t.Fatalf("ssh-config: exit %d: %s\n%s", code, errs, conf)
	}
	file := filepath.Join(home, "custos.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := realSSH("-F", file, "demo-ssh", "echo via-config; whoami"); err != nil ||
		!strings.Contains(out, "via-config") || !strings.Contains(out, login) {
		t.Fatalf("ssh -F (custos ssh-config) demo-ssh: %v: %q\n%s", err, out, conf)
	}

	// --write, twice: one block, the user's own lines and keys intact.
	sshDir := filepath.Join(home, ".ssh")
	mine := map[string]string{"config": "Host other\n  User me\n", "id_ed25519": "my key\n", "id_ed25519-cert.pub": "my cert\n"}
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range mine {
		if err := os.WriteFile(filepath.Join(sshDir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if out, errs, code := b.runEnv("alice", "", env, "ssh-config", "--write"); code != 0 || !strings.Contains(out, "wrote 1 Host block") {
			t.Fatalf("ssh-config --write: exit %d: %q %q", code, out, errs)
		}
	}
	written, err := os.ReadFile(filepath.Join(sshDir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(written), mine["config"]) || strings.Count(string(written), "# BEGIN custos") != 1 ||
		strings.Count(string(written), "Host demo-ssh\n") != 1 {
		t.Fatalf("~/.ssh/config after two --write:\n%s", written)
	}
	for _, name := range []string{"id_ed25519", "id_ed25519-cert.pub"} {
		if got, _ := os.ReadFile(filepath.Join(sshDir, name)); string(got) != mine[name] {
			t.Fatalf("~/.ssh/%s was changed: %q", name, got)
		}
	}
	if out, err := realSSH("-F", filepath.Join(sshDir, "config"), "demo-ssh", "echo via-written"); err != nil || !strings.Contains(out, "via-written") {
		t.Fatalf("ssh with the written ~/.ssh/config: %v: %q", err, out)
	}

	// custos ssh: no config at all, ssh's exit status kept.
	if out, errs, code := b.runEnv("alice", "", env, "ssh", "demo-ssh", "--", "echo via-custos-ssh"); code != 0 || !strings.Contains(out, "via-custos-ssh") {
		t.Fatalf("custos ssh demo-ssh: exit %d: %q %q", code, out, errs)
	}
	if _, errs, code := b.runEnv("alice", "", env, "ssh", "demo-ssh", "--", "exit 7"); code != 7 {
		t.Fatalf("custos ssh: exit %d, want ssh's 7: %s", code, errs)
	}

	// login --ssh: a refresh of this broker's certificate needs no
	// --force; another CA's certificate is not replaced without it.
	loginSSH := func(key string, extra ...string) (string, int) {
		_, errs, code := b.runEnv("alice", e2ePassword+"\n", env, append([]string{"login", "--user", "alice", "--password-stdin", "--ssh", "--ssh-key", key}, extra...)...)
		return errs, code
	}
	if errs, code := loginSSH(laptop); code != 0 {
		t.Fatalf("login --ssh refreshing the broker's own certificate: exit %d: %s", code, errs)
	}
	foreign := writeUserKey(t, t.TempDir(), "foreign")
	other := "ssh-ed25519-cert-v01@openssh.com AAAA-from-another-CA\n"
	if err := os.WriteFile(foreign+"-cert.pub", []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if errs, code := loginSSH(foreign); code == 0 || !strings.Contains(errs, "--force") {
		t.Fatalf("login --ssh over another certificate: exit %d: %s", code, errs)
	}
	if got, _ := os.ReadFile(foreign + "-cert.pub"); string(got) != other {
		t.Fatalf("the other certificate was replaced: %q", got)
	}
	if errs, code := loginSSH(foreign, "--force"); code != 0 {
		t.Fatalf("login --ssh --force: exit %d: %s", code, errs)
	}
	if got, _ := os.ReadFile(foreign + "-cert.pub"); string(got) == other {
		t.Fatal("login --ssh --force left the other certificate")
	}
}
