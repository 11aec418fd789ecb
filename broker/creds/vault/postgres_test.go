package vault

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/creds"
)

// A per-grant login works, is shared by the grant's sessions, names user
// and grant in pg_stat_activity, never outlives the grant, and when the
// grant is revoked the lease is gone from Vault within a second, the login
// no longer works and no backend is left.
func TestPostgresPerGrantLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g := e.grant(t, "alice", "pg1", "readonly", 2*time.Minute)

	lease, err := e.issuer.ForSession(ctx, g, "ses_one")
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.issuer.ForSession(ctx, g, "ses_two")
	if err != nil {
		t.Fatal(err)
	}
	if again.Username != lease.Username || again.LeaseID != lease.LeaseID || again.SessionID != "" {
		t.Errorf("second session got %v, want the grant's shared %v", again, lease)
	}
	if lease.ExpiresAt.After(g.EndsAt) {
		t.Errorf("lease expires %s, after the grant's end %s", lease.ExpiresAt, g.EndsAt)
	}
	alive, vaultExpiry := e.leaseAlive(t, lease.LeaseID)
	if !alive {
		t.Fatal("lease unknown to Vault right after issue")
	}
	if vaultExpiry.After(g.EndsAt.Add(endGrace+time.Second)) {
		t.Errorf("Vault lease expires %s, more than the grace after the grant's end %s", vaultExpiry, g.EndsAt)
	}
	t.Logf("issued login %s", lease.Username)
	wantName := "alice-" + strings.ReplaceAll(g.ID, "_", "-")
	if !strings.Contains(lease.Username, wantName) {
		t.Errorf("username %q does not name user and grant (%q)", lease.Username, wantName)
	}

	conn, err := pgx.Connect(ctx, e.targetDSN(lease.Username, lease.Password))
	if err != nil {
		t.Fatalf("log in with issued credentials: %v", err)
	}
	defer conn.Close(ctx)
	var who, runsAs string
	if err := conn.QueryRow(ctx, "SELECT session_user, current_user").Scan(&who, &runsAs); err != nil || who != lease.Username {
		t.Fatalf("session_user = %q, %v", who, err)
	}
	if runsAs != "custos_readonly" {
		t.Errorf("current_user = %q, want the stable role custos_readonly", runsAs)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_roles").Scan(&n); err != nil {
		t.Fatalf("read as readonly: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE nope (x int)"); err == nil {
		t.Error("readonly login could create a table")
	}
	admin := e.admin(t)
	oid := roleOID(t, admin, lease.Username)
	if got := backends(t, admin, oid); got != 1 {
		t.Fatalf("%d backends for %s, want 1", got, lease.Username)
	}
	var shown string
	if err := admin.QueryRow(ctx, "SELECT usename FROM pg_stat_activity WHERE usesysid = $1", oid).Scan(&shown); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(shown, wantName+"-readonly-") {
		t.Errorf("pg_stat_activity shows %q, want user, grant and role (%s-readonly-…)", shown, wantName)
	}

	start := time.Now()
	e.endGrant(t, g, broker.GrantRevoked, true)
	e.waitLeaseGone(t, lease.LeaseID, 5*time.Second)
	took := time.Since(start)
	t.Logf("lease revoked %s after the grant was revoked", took)
	if took > time.Second {
		t.Errorf("lease revoked %s after the grant, want within 1s", took)
	}
	if got := backends(t, admin, oid); got != 0 {
		t.Errorf("%d backends left for %s after revocation", got, lease.Username)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("open connection still works after revocation")
	}
	if c, err := pgx.Connect(ctx, e.targetDSN(lease.Username, lease.Password)); err == nil {
		c.Close(ctx)
		t.Error("issued credentials still log in after revocation")
	}
	var roles int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", lease.Username).Scan(&roles); err != nil || roles != 0 {
		t.Errorf("role %s still exists (%d, %v)", lease.Username, roles, err)
	}

	// Nothing more is issued for the ended grant, even from a stale copy.
	if _, err := e.issuer.ForSession(ctx, g, "ses_three"); !errors.Is(err, creds.ErrGrantEnded) {
		t.Errorf("issue after revocation: %v, want ErrGrantEnded", err)
	}

	issues := e.auditRecords(t, "creds.issue")
	revokes := e.auditRecords(t, "creds.revoke")
	if !hasAudit(issues, g.ID, broker.OutcomeSuccess) || !hasAudit(revokes, g.ID, broker.OutcomeSuccess) {
		t.Errorf("missing creds.issue/creds.revoke audit records for %s", g.ID)
	}
	if !hasAudit(e.auditRecords(t, "creds.renew"), g.ID, broker.OutcomeSuccess) {
		t.Errorf("missing creds.renew audit record bounding the lease to the grant")
	}
	if !hasAudit(issues, g.ID, broker.OutcomeDenied) {
		t.Errorf("refused issue after revocation not audited")
	}
	e.assertNoSecret(t, lease.Password)
}

func hasAudit(recs []broker.AuditRecord, grantID, outcome string) bool {
	for _, r := range recs {
		if strings.Contains(string(r.Details), `"grant_id":"`+grantID+`"`) && r.Outcome == outcome {
			return true
		}
	}
	return false
}

// A grant that simply runs out, with no event at all, loses its login at
// its end: the lease was issued no longer than the grant and the sweep
// revokes it (and with it the backends).
func TestPostgresGrantEndsWithoutEvent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g := e.grant(t, "alice", "pg1", "readonly", 4*time.Second)
	lease, err := e.issuer.ForSession(ctx, g, "ses_a")
	if err != nil {
		t.Fatal(err)
	}
	_, exp := e.leaseAlive(t, lease.LeaseID)
	if exp.After(g.EndsAt.Add(endGrace+time.Second)) {
		t.Fatalf("Vault lease expires %s, more than the grace after the grant's end %s", exp, g.EndsAt)
	}
	conn, err := pgx.Connect(ctx, e.targetDSN(lease.Username, lease.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	admin := e.admin(t)
	oid := roleOID(t, admin, lease.Username)
	if got := backends(t, admin, oid); got != 1 {
		t.Fatalf("%d backends before the grant's end, want 1", got)
	}
	time.Sleep(time.Until(g.EndsAt))
	took := e.waitLeaseGone(t, lease.LeaseID, 5*time.Second)
	t.Logf("lease gone %s after the grant's end", took)
	if took > 2*time.Second {
		t.Errorf("lease outlived the grant by %s", took)
	}
	if got := backends(t, admin, oid); got != 0 {
		t.Errorf("%d backends left after the grant ended", got)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("open connection still works after the grant ended")
	}
	if c, err := pgx.Connect(ctx, e.targetDSN(lease.Username, lease.Password)); err == nil {
		c.Close(ctx)
		t.Error("credentials still log in after the grant ended")
	}
}

// per_session roles get a login per session; ending a session revokes only
// its own, and ending the grant revokes the rest.
func TestPostgresPerSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g := e.grant(t, "dave", "pg1", "rw", time.Minute)
	a, err := e.issuer.ForSession(ctx, g, "ses_a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.issuer.ForSession(ctx, g, "ses_b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Username == b.Username || a.SessionID != "ses_a" || b.SessionID != "ses_b" {
		t.Fatalf("sessions share a login: %v %v", a, b)
	}
	for _, l := range []creds.Lease{a, b} {
		c, err := pgx.Connect(ctx, e.targetDSN(l.Username, l.Password))
		if err != nil {
			t.Fatalf("log in as %s: %v", l.Username, err)
		}
		c.Close(ctx)
	}
	if err := e.issuer.EndSession(ctx, g.ID, "ses_a"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.leaseAlive(t, a.LeaseID); ok {
		t.Error("ended session's lease still alive")
	}
	if ok, _ := e.leaseAlive(t, b.LeaseID); !ok {
		t.Fatal("other session's lease revoked too")
	}
	if c, err := pgx.Connect(ctx, e.targetDSN(b.Username, b.Password)); err != nil {
		t.Errorf("other session's login broken: %v", err)
	} else {
		c.Close(ctx)
	}
	e.endGrant(t, g, broker.GrantExpired, true)
	e.waitLeaseGone(t, b.LeaseID, time.Second)
}

// A broker that stops while holding leases, and whose grant ends while it
// is down, revokes them when it starts again: the lease index survives in
// the store.
func TestRestartRevokesLeftoverLeases(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// A first broker issues, then goes away without revoking anything.
	c1, err := New(e.cfg.Vault, e.log)
	if err != nil {
		t.Fatal(err)
	}
	first, err := NewIssuer(Options{Client: c1, Config: e.cfg, Store: e.store, Audit: e.audit, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	g := e.grant(t, "erin", "pg1", "readonly", time.Minute)
	lease, err := first.ForSession(ctx, g, "ses_x")
	if err != nil {
		t.Fatal(err)
	}
	// Another grant that stays active keeps its login across the restart.
	keep := e.grant(t, "erin", "pg1", "readonly", time.Minute)
	kept, err := first.ForSession(ctx, keep, "ses_y")
	if err != nil {
		t.Fatal(err)
	}
	// The grant is revoked while no broker listens.
	e.endGrant(t, g, broker.GrantRevoked, false)
	if ok, _ := e.leaseAlive(t, lease.LeaseID); !ok {
		t.Fatal("lease gone before the restart; the test proves nothing")
	}
	// The restarted broker revokes it on start.
	e.start(t, e.cfg)
	e.waitLeaseGone(t, lease.LeaseID, 3*time.Second)
	time.Sleep(200 * time.Millisecond)
	if ok, _ := e.leaseAlive(t, kept.LeaseID); !ok {
		t.Error("restart revoked the lease of a grant that is still active")
	}
}
