package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// TestDisabledUserEndToEnd is the attacker's test for a user disabled in
// config: their API token, database connection token, grant and pending
// request live in the store and survive the restart that applies the new
// config. After it, the token is refused, the grant is revoked, the
// request cancelled, and each step is a system audit record.
func TestDisabledUserEndToEnd(t *testing.T) {
	storeSections(t, func(t *testing.T, store string) {
		b := newBroker(t, store)
		b.login("alice", "bob", "sam")
		req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-9", "-o", "json"))
		g := decode[decided](t, b.ok("bob", "approve", req.ID, "-o", "json")).Grant
		if g == nil {
			t.Fatal("no grant")
		}
		b.ok("alice", "db", "token", "demo-pg")
		pending := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readwrite", "--for", "10m", "--reason", "INC-10", "-o", "json"))

		b.stop(syscall.SIGTERM)
		body, err := os.ReadFile(b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		const line = "{name: alice, password: env:CUSTOS_E2E_PASSWORD}"
		disabled := strings.Replace(string(body), line, "{name: alice, password: env:CUSTOS_E2E_PASSWORD, disabled: true}", 1)
		if disabled == string(body) {
			t.Fatal("config has no alice line")
		}
		if err := os.WriteFile(b.cfg, []byte(disabled), 0o600); err != nil {
			t.Fatal(err)
		}
		b.start()

		b.refused("alice", "token_invalid", "whoami")
		if _, errs, code := b.run("alice", e2ePassword+"\n", "login", "--user", "alice", "--password-stdin"); code == 0 || !strings.Contains(errs, "login_failed") {
			t.Fatalf("disabled user signed in: exit %d %s", code, errs)
		}
		if got := decode[jsonGrant](t, getGrantJSON(t, b, g.ID)); got.State != "revoked" {
			t.Fatalf("disabled user's grant is %s after the restart", got.State)
		}
		// bob cannot approve the pending request: it was cancelled.
		b.refused("bob", "already_decided", "approve", pending.ID)

		type rec struct{ Action, Outcome, Actor, Reason string }
		seen := map[string]int{}
		for _, r := range decode[[]rec](t, b.ok("sam", "audit", "list", "--limit", "1000", "-o", "json")) {
			if r.Actor == "system" && strings.Contains(r.Reason, "alice is disabled or removed") {
				seen[r.Action+":"+r.Outcome]++
			}
		}
		// Two tokens: the API token from login and the db token.
		if seen["token.revoke:success"] != 2 || seen["grant.revoke:success"] != 1 || seen["request.cancel:success"] != 1 {
			t.Fatalf("system records for alice: %v", seen)
		}
	})
}

// TestDisabledUserOtherReplica: two brokers share a PostgreSQL store; one
// still runs with the old config when the other starts with alice
// disabled. The running one refuses her token at once (it is gone from
// the store) and sees her grant revoked: its proxies end her sessions on
// that grant event.
func TestDisabledUserOtherReplica(t *testing.T) {
	pg := devstack.StartPostgres(t)
	store := fmt.Sprintf("{driver: postgres, dsn: %q}", pg.DSN(pg.CreateDatabase(t, "e2e")))
	a := newBroker(t, store)
	a.login("alice", "bob", "sam")
	req := decode[jsonRequest](t, a.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-9", "-o", "json"))
	g := decode[decided](t, a.ok("bob", "approve", req.ID, "-o", "json")).Grant
	a.ok("alice", "whoami")

	dir := t.TempDir()
	port := devstack.FreePort(t)
	body := fmt.Sprintf(e2eConfig, fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "data"), store)
	body = strings.Replace(body, "{name: alice, password: env:CUSTOS_E2E_PASSWORD}", "{name: alice, password: env:CUSTOS_E2E_PASSWORD, disabled: true}", 1)
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("http://127.0.0.1:%d", port), homes: map[string]string{}}
	if err := os.WriteFile(b.cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })

	a.refused("alice", "token_invalid", "whoami")
	waitState(t, a, "sam", g.ID, "revoked", time.Now().Add(2*time.Second))
}
