package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// TestDisabledUsersTokens is the attacker's test for a user disabled (or
// removed) in config: tokens issued before survive in the store, but once
// the broker starts with the new config every kind is refused, and
// RevokeDisabled deletes them with one record each.
func TestDisabledUsersTokens(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	cfg, _ := testConfig(t)
	st := openStore(t)
	log := audit.NewLog(st)
	service := func(cfg *config.Config) *Service {
		t.Helper()
		d, err := NewDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: log, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := service(cfg)
	type issued struct{ user, kind, secret string }
	var all []issued
	for _, u := range []string{"alice", "sam"} {
		for _, kind := range []string{KindAPI, KindWeb, KindDB} {
			target := ""
			if kind == KindDB {
				target = "db1"
			}
			secret, _, err := before.Tokens().Issue(ctx, u, kind, target, time.Hour, "10.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, issued{u, kind, secret})
		}
	}
	// The new config disables alice and no longer lists sam.
	cfg2, _ := testConfig(t)
	for i := range cfg2.Users {
		if cfg2.Users[i].Name == "alice" {
			cfg2.Users[i].Disabled = true
		}
	}
	for i, u := range cfg2.Users {
		if u.Name == "sam" {
			cfg2.Users = append(cfg2.Users[:i], cfg2.Users[i+1:]...)
			break
		}
	}
	cfg2.Groups[1].Members = nil // security: sam
	after := service(cfg2)
	for _, tok := range all {
		if _, err := after.VerifyToken(ctx, tok.secret, tok.kind); CodeOf(err) != CodeTokenInvalid {
			t.Errorf("%s's %s token after disabling: %v, want token_invalid", tok.user, tok.kind, err)
		}
		// The token layer the PostgreSQL proxy's authenticator uses
		// refuses too.
		if _, err := after.Tokens().Verify(ctx, tok.secret, tok.kind); CodeOf(err) != CodeTokenInvalid {
			t.Errorf("Tokens.Verify of %s's %s token: %v", tok.user, tok.kind, err)
		}
	}
	if _, _, err := after.Tokens().Issue(ctx, "alice", KindDB, "db1", time.Hour, ""); CodeOf(err) != CodeBadRequest {
		t.Errorf("issuing to a disabled user: %v", err)
	}
	// bob is untouched.
	bobSecret, _, err := after.Tokens().Issue(ctx, "bob", KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := after.RevokeDisabled(ctx)
	if err != nil || n != len(all) {
		t.Fatalf("RevokeDisabled = %d, %v; want %d", n, err, len(all))
	}
	for _, u := range []string{"alice", "sam"} {
		if l, _ := after.ListTokens(ctx, u); len(l) != 0 {
			t.Errorf("%s still has %d tokens", u, len(l))
		}
	}
	if _, err := after.VerifyToken(ctx, bobSecret, KindAPI); err != nil {
		t.Errorf("bob's token: %v", err)
	}
	var revoked int
	for _, r := range auditRecords(t, st, "token.revoke") {
		if r.Actor == "system" && r.Outcome == broker.OutcomeSuccess && strings.Contains(r.Reason, "disabled or removed") {
			revoked++
		}
	}
	if revoked != len(all) {
		t.Errorf("%d token.revoke records by system, want %d", revoked, len(all))
	}
	if n, err := after.RevokeDisabled(ctx); err != nil || n != 0 {
		t.Errorf("second RevokeDisabled = %d, %v", n, err)
	}
	verifyChain(t, st)
}
