package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reload writes body as the broker's config, sends SIGHUP and waits for
// the log line that says how the reload went (want: "config reloaded" or
// "config reload refused"), counting only lines after the signal.
func (b *brokerProc) reload(body, want string) {
	b.t.Helper()
	if err := os.WriteFile(b.cfg, []byte(body), 0o600); err != nil {
		b.t.Fatal(err)
	}
	before := strings.Count(b.logs.String(), want)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		b.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(b.logs.String(), want) == before; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.t.Fatalf("no %q after SIGHUP; broker log:\n%s", want, b.logs)
		}
	}
}

// TestReloadEndToEnd runs the real broker, edits its config and sends
// SIGHUP: a target added is requestable at once; a user removed loses
// their token, grant and pending request; a new user can sign in; a change
// that cannot apply while running is warned about; a broken config is
// refused and the running one stays; the broker never restarted.
func TestReloadEndToEnd(t *testing.T) {
	b := newBroker(t, fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(t.TempDir(), "custos.db")))
	b.login("alice", "bob", "carol", "sam")
	pid := b.cmd.Process.Pid
	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-9", "-o", "json"))
	g := decode[decided](t, b.ok("bob", "approve", req.ID, "-o", "json")).Grant
	pending := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readwrite", "--for", "10m", "--reason", "INC-10", "-o", "json"))
	b.refused("bob", "unknown_target", "request", "demo-new", "--role", "ro", "--for", "10m", "--reason", "x")

	orig, err := os.ReadFile(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	next := string(orig)
	for _, r := range [][2]string{
		// alice removed; dave joins the dbas and bob becomes one too.
		{"  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}\n", "  - {name: dave, password: env:CUSTOS_E2E_PASSWORD}\n"},
		{"{name: dbas, members: [alice]}", "{name: dbas, members: [dave, bob]}"},
		// Read only at start: warned about, not applied.
		{"listen: {", "public_url: \"http://custos.example.test\"\nlisten: {"},
	} {
		if !strings.Contains(next, r[0]) {
			t.Fatalf("config lacks %q", r[0])
		}
		next = strings.Replace(next, r[0], r[1], 1)
	}
	next += `  - name: demo-new
    kind: postgres
    address: 127.0.0.1:5433
    roles:
      - name: ro
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h}
`
	b.reload(next, `"msg":"config reloaded"`)

	// The new target is requestable, by the new requester and the new user.
	newReq := decode[jsonRequest](t, b.ok("bob", "request", "demo-new", "--role", "ro", "--for", "10m", "--reason", "INC-11", "-o", "json"))
	if newReq.State != "pending" {
		t.Fatalf("request for the added target: %+v", newReq)
	}
	b.login("dave")
	b.ok("dave", "request", "demo-new", "--role", "ro", "--for", "5m", "--reason", "INC-12")
	// alice is gone: her token, grant and pending request with her.
	b.refused("alice", "token_invalid", "whoami")
	if _, errs, code := b.run("alice", e2ePassword+"\n", "login", "--user", "alice", "--password-stdin"); code == 0 || !strings.Contains(errs, "login_failed") {
		t.Fatalf("removed user signed in: exit %d %s", code, errs)
	}
	if got := decode[jsonGrant](t, getGrantJSON(t, b, g.ID)); got.State != "revoked" {
		t.Fatalf("removed user's grant is %s after the reload", got.State)
	}
	b.refused("carol", "already_decided", "approve", pending.ID)
	if !strings.Contains(b.logs.String(), `"part":"public_url"`) {
		t.Errorf("no warning that public_url is only read at start:\n%s", b.logs)
	}

	// A broken config is refused with a clear line; the running one stays.
	b.reload(next+"  - {name: broken, kind: telnet}\n", `"msg":"config reload refused; the running config stays"`)
	b.ok("dave", "request", "demo-new", "--role", "ro", "--for", "5m", "--reason", "INC-13")
	b.refused("alice", "token_invalid", "whoami")
	// And YAML that does not parse at all.
	b.reload("targets: [", `"msg":"config reload refused; the running config stays"`)
	b.ok("dave", "whoami")

	if b.cmd.Process.Pid != pid {
		t.Fatal("the broker restarted")
	}
	select {
	case <-b.done:
		t.Fatalf("the broker exited on SIGHUP:\n%s", b.logs)
	default:
	}
	type rec struct{ Action, Outcome string }
	var ok, refused int
	for _, r := range decode[[]rec](t, b.ok("sam", "audit", "list", "--action", "config.reload", "--limit", "100", "-o", "json")) {
		switch r.Outcome {
		case "success":
			ok++
		case "error":
			refused++
		}
	}
	if ok != 1 || refused != 2 {
		t.Errorf("config.reload audit records: %d applied, %d refused; want 1 and 2", ok, refused)
	}
}
