package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// TestFaultVaultStopped: the broker reaches Vault through a gate that the
// test closes, so to the broker Vault is gone (connections refused, the
// open ones cut) while the dev server, which keeps its leases in memory
// only, keeps them for when it returns.
//
// With Vault down: a new psql and a new ssh session are refused with a
// message naming the credentials as unavailable; running psql and ssh
// sessions go on working; revoking its grant ends it at once, but the
// per-session login cannot be dropped yet. When Vault returns, the queued
// revocation is applied (the login is gone from the target) and the
// creds.revoke record says when it was asked for and how late it ran.
// Nothing was extended: the revoked token connects nowhere.
func TestFaultVaultStopped(t *testing.T) {
	var gate *tcpGate
	s := startFullStack(t, stackOptions{vaultAddr: func(v *devstack.Vault) string {
		gate = newTCPGate(t, strings.TrimPrefix(v.Addr, "http://"))
		return "http://" + gate.addr
	}})
	b := s.b

	g := s.grant("demo-pg", "readwrite", "10m")
	s.grant("demo-ssh", "ops", "10m")
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	running := s.pgxConn(ctx, token, "readwrite")
	defer running.Close(context.Background())
	var login string
	if err := running.QueryRow(ctx, "select session_user").Scan(&login); err != nil || !strings.Contains(login, "readwrite") {
		t.Fatalf("running session's login: %q, %v", login, err)
	}
	// A per-grant login too (readonly): only the grant's revocation can
	// drop it, never the end of a session.
	ro := s.grant("demo-pg", "readonly", "10m")
	roConn := s.pgxConn(ctx, token, "readonly")
	defer roConn.Close(context.Background())
	var roLogin string
	if err := roConn.QueryRow(ctx, "select session_user").Scan(&roLogin); err != nil || !strings.Contains(roLogin, "readonly") {
		t.Fatalf("readonly session's login: %q, %v", roLogin, err)
	}

	sshSeen, _ := s.sshTicker(ctx)
	for deadline := time.Now().Add(20 * time.Second); sshSeen.Load() < 5; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ssh session not running\nbroker log:\n%s", b.logs)
		}
	}

	gate.close()
	downAt := time.Now()
	sshAtDown := sshSeen.Load()

	// New sessions are refused, saying why.
	out, err := s.psqlRole(token, "readwrite", "select 1")
	t.Logf("psql with Vault down: %q", out)
	if err == nil || !strings.Contains(out, "FATAL:  custos: credentials unavailable for target demo-pg") {
		t.Errorf("psql with Vault down: want a refusal naming the credentials, got %v: %q", err, out)
	}
	out, err = sshRun(t, s.alice, s.sshPort, "demo-ssh", "echo should-not-run")
	t.Logf("ssh with Vault down: %q", out)
	if err == nil || strings.Contains(out, "should-not-run") || strings.Contains(out, "ssh/sign") ||
		!strings.Contains(out, "custos: cannot connect to demo-ssh: credentials unavailable; try again later") {
		t.Errorf("ssh with Vault down: want a refusal naming the credentials, got %v: %q", err, out)
	}

	// The running session goes on.
	for i := 0; i < 3; i++ {
		var n int
		if err := running.QueryRow(ctx, "select 6*7").Scan(&n); err != nil || n != 42 {
			t.Fatalf("running session with Vault down: %d, %v", n, err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	if n := sshSeen.Load(); n < sshAtDown+5 {
		t.Fatalf("running ssh session stalled with Vault down: counter %d at the outage, %d now", sshAtDown, n)
	} else {
		t.Logf("running ssh session with Vault down: counter %d at the outage, %d now", sshAtDown, n)
	}

	// Revoked with Vault down: the session ends now with the reason; the
	// login stays until Vault can drop it.
	// Its per-grant login exists already, but a new session also needs
	// Vault to wrap its recording key (recording.encryption: vault).
	out, err = s.psqlRole(token, "readonly", "select 1")
	t.Logf("psql with Vault down, per-grant login already issued: %q", out)
	if err == nil || !strings.Contains(out, "FATAL:  custos: session recording unavailable; connection refused (fail-closed)") {
		t.Errorf("psql with Vault down, per-grant login already issued: want a refusal, got %v: %q", err, out)
	}

	revokedAt := time.Now()
	b.ok("alice", "revoke", g.ID, "--reason", "INC-15 done")
	b.ok("alice", "revoke", ro.ID, "--reason", "INC-15 done")
	var endErr error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, endErr = running.Exec(ctx, "select 1"); endErr != nil {
			break
		}
	}
	if endErr == nil || !strings.Contains(endErr.Error(), "access revoked") {
		t.Fatalf("running session after revoke with Vault down: %v", endErr)
	}
	t.Logf("session ended %v after revoke: %v", time.Since(revokedAt), endErr)
	if out, err := s.psql(token, "select 1"); err == nil {
		t.Fatalf("revoked token connected with Vault down: %q", out)
	}
	time.Sleep(3 * time.Second)
	if !roleExists(t, s.pg, login) || !roleExists(t, s.pg, roLogin) {
		t.Fatal("a login is gone while Vault was down: the test does not cut Vault off")
	}

	gate.open(t)
	upAt := time.Now()
	t.Logf("vault down for %v", upAt.Sub(downAt))
	for deadline := time.Now().Add(20 * time.Second); roleExists(t, s.pg, login) || roleExists(t, s.pg, roLogin); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logins %s, %s: one still on the target 20s after Vault returned\nbroker log:\n%s", login, roLogin, b.logs)
		}
	}
	t.Logf("queued revocation applied %v after Vault returned", time.Since(upAt))

	// The audit says each revocation failed while Vault was down and when
	// it finally ran, with its delay. For the per-session login either
	// path may apply it first: the grant's queued revocation or the
	// revoker finding the session over; the other then finds nothing left.
	recs := decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "creds.revoke", "--limit", "1000", "-o", "json"))
	for grant, user := range map[string]string{g.ID: login, ro.ID: roLogin} {
		var failed, applied int
		for _, r := range recs {
			if r.Details["grant_id"] != grant || r.Details["username"] != user {
				continue
			}
			switch r.Outcome {
			case "error":
				failed++
			case "success":
				applied++
				delay, _ := r.Details["delay_ms"].(float64)
				requested, _ := r.Details["requested_at"].(string)
				asked, _ := time.Parse(time.RFC3339Nano, requested)
				if time.Duration(delay)*time.Millisecond < upAt.Sub(revokedAt)-time.Second || asked.Before(revokedAt.Add(-2*time.Second)) || asked.After(upAt) {
					t.Errorf("creds.revoke of %s after the outage: delay %vms, requested at %v; revoked at %v, Vault back at %v",
						user, delay, asked, revokedAt, upAt)
				}
				t.Logf("creds.revoke of %s at %v (%s): requested_at %v, delay %vms", user, r.Time, r.Reason, asked, delay)
			}
		}
		if failed == 0 || applied != 1 {
			t.Errorf("creds.revoke records for %s: %d failed, %d applied; want failures then one success", user, failed, applied)
		}
	}

	// Nothing extended: the grant is revoked, its token connects nowhere.
	for _, id := range []string{g.ID, ro.ID} {
		if got := decode[jsonGrant](t, getGrantJSON(t, b, id)); got.State != "revoked" {
			t.Errorf("grant %s is %s", id, got.State)
		}
	}
	if out, err := s.psql(token, "select 1"); err == nil {
		t.Fatalf("revoked token connected after Vault returned: %q", out)
	}
}
