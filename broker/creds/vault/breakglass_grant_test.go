package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker/config"
)

// A break-glass role hands out the static role's login only to a grant an
// unseal of that account opened; an ordinary grant for the role, or a
// grant naming the account on another role, gets nothing.
func TestBreakGlassGrantGetsStaticLogin(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig(e.pg)
	cfg.Vault = e.cfg.Vault
	pgT, _ := cfg.FindTarget("pg1")
	pgT.Roles = append(pgT.Roles, config.Role{Name: "bg", VaultRole: "breakglass"})
	cfg.BreakGlass = []config.BreakGlassAccount{{Name: "pg-admin", Target: "pg1", Role: "bg",
		Credential: config.BreakGlassCredential{Type: config.BreakGlassDatabaseStatic, VaultRole: "breakglass"}}}
	_, iss := e.start(t, cfg)
	ctx := context.Background()

	ordinary := e.grant(t, "alice", "pg1", "bg", time.Minute)
	if _, err := iss.ForSession(ctx, ordinary, "ses_1"); err == nil || !strings.Contains(err.Error(), "sealed break-glass account pg-admin") {
		t.Fatalf("ordinary grant for the break-glass role: %v", err)
	}
	misnamed := e.grant(t, "alice", "pg1", "readonly", time.Minute)
	misnamed.BreakGlass = "pg-admin"
	if _, err := iss.ForSession(ctx, misnamed, "ses_2"); err == nil || !strings.Contains(err.Error(), "does not use role") {
		t.Fatalf("grant naming the account on another role: %v", err)
	}

	unsealed := e.grant(t, "sam", "pg1", "bg", time.Minute)
	unsealed.BreakGlass = "pg-admin"
	l, err := iss.ForSession(ctx, unsealed, "ses_3")
	if err != nil {
		t.Fatal(err)
	}
	if l.Username != "custos_breakglass" || l.LeaseID != "" || !l.ExpiresAt.Equal(unsealed.EndsAt) {
		t.Errorf("lease %v", l)
	}
	c, err := pgx.Connect(ctx, e.targetDSN(l.Username, l.Password))
	if err != nil {
		t.Fatalf("static login does not work: %v", err)
	}
	c.Close(ctx)
	ended := e.endGrant(t, unsealed, "revoked", false)
	if _, err := iss.ForSession(ctx, ended, "ses_4"); err == nil {
		t.Fatal("an ended break-glass grant still gets the login")
	}
	var found bool
	for _, r := range e.auditRecords(t, "creds.issue") {
		if strings.Contains(string(r.Details), `"break_glass":"pg-admin"`) {
			found = true
		}
	}
	if !found {
		t.Error("no creds.issue audit record naming the account")
	}
	e.assertNoSecret(t, l.Password)
}
