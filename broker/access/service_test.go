package access_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

const testConfig = `
users: [{name: alice}, {name: bob}, {name: carol}, {name: sam}, {name: mallory}]
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob, carol, alice]}
  - {name: security, members: [sam]}
security_admins: [security]
targets:
  - name: db
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: ro
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 2h, require_reason: true, request_ttl: 10m}
      - name: rw
        policy: {requesters: [dbas], approvers: [approvers], approvals: 2, max_duration: 1h}
`

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)} }
func code(err error) string          { return broker.CodeOf(err) }

func setup(t *testing.T) (*access.Service, broker.Store, *clock) {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := newClock()
	return access.New(access.Options{Config: cfg, Store: st, Audit: audit.NewLog(st), Now: c.now}), st, c
}

func auditActions(t *testing.T, st broker.Store) []string {
	t.Helper()
	var out []string
	err := st.View(context.Background(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{})
		for _, r := range recs {
			out = append(out, r.Action+":"+r.Outcome)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(context.Background(), st)
	if err != nil || !rep.OK {
		t.Fatalf("audit chain: %+v %v", rep, err)
	}
	return out
}

func TestRequestApproveExpire(t *testing.T) {
	ctx := context.Background()
	s, st, c := setup(t)
	req, err := s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "ro", Duration: time.Hour, Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	if req.State != broker.RequestPending || !req.ExpiresAt.Equal(c.t.Add(10*time.Minute)) || req.Required != 1 {
		t.Fatalf("bad pending request: %+v", req)
	}
	if _, _, err := s.Decide(ctx, "alice", req.ID, access.Decision{Approve: true}); code(err) != "self_approval" {
		t.Fatalf("self approval: want self_approval, got %v", err)
	}
	if _, _, err := s.Decide(ctx, "mallory", req.ID, access.Decision{Approve: true}); code(err) != "not_approver" {
		t.Fatalf("non-approver: want not_approver, got %v", err)
	}
	c.add(time.Minute)
	got, g, err := s.Decide(ctx, "bob", req.ID, access.Decision{Approve: true, Comment: "ok", Via: "cli"})
	if err != nil || g == nil {
		t.Fatalf("approve: %v %v", g, err)
	}
	if got.State != broker.RequestApproved || got.GrantID != g.ID || !g.EndsAt.Equal(c.t.Add(time.Hour)) || g.Approvers[0] != "bob" {
		t.Fatalf("bad grant: %+v / %+v", got, g)
	}
	if _, _, err := s.Decide(ctx, "carol", req.ID, access.Decision{Approve: true}); code(err) != "already_decided" {
		t.Fatalf("approving a decided request: got %v", err)
	}
	if active, err := s.ActiveGrant(ctx, "alice", "db"); err != nil || active.ID != g.ID {
		t.Fatalf("active grant: %v %v", active, err)
	}
	if active, err := s.ActiveGrantAs(ctx, "alice", "db", g.Role); err != nil || active.ID != g.ID {
		t.Fatalf("active grant as %s: %v %v", g.Role, active, err)
	}
	if _, err := s.ActiveGrantAs(ctx, "alice", "db", g.Role+"-other"); code(err) != "no_active_grant" {
		t.Fatalf("active grant as another role: want no_active_grant, got %v", err)
	}
	// One nanosecond before the end the grant is still active; at the end it expires.
	c.t = g.EndsAt.Add(-time.Nanosecond)
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if gg, _ := s.GetGrant(ctx, g.ID); gg.State != broker.GrantActive {
		t.Fatalf("expired early: %s", gg.State)
	}
	c.t = g.EndsAt
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if gg, _ := s.GetGrant(ctx, g.ID); gg.State != broker.GrantExpired {
		t.Fatalf("not expired at end: %s", gg.State)
	}
	if _, err := s.ActiveGrant(ctx, "alice", "db"); code(err) != "no_active_grant" {
		t.Fatalf("want no_active_grant after expiry, got %v", err)
	}
	want := []string{"request.create:success", "request.approve:denied", "request.approve:denied",
		"request.approve:success", "grant.create:success", "request.approve:denied", "grant.expire:success"}
	if got := auditActions(t, st); !equal(got, want) {
		t.Fatalf("audit trail:\n got %v\nwant %v", got, want)
	}
}

func TestTwoOfN(t *testing.T) {
	ctx := context.Background()
	s, _, _ := setup(t)
	req, err := s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "rw", Duration: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if r, g, err := s.Decide(ctx, "bob", req.ID, access.Decision{Approve: true}); err != nil || g != nil || r.State != broker.RequestPending {
		t.Fatalf("first approval must not grant: %+v %v %v", r, g, err)
	}
	if _, _, err := s.Decide(ctx, "bob", req.ID, access.Decision{Approve: true}); code(err) != "duplicate_approval" {
		t.Fatalf("second approval by the same person: %v", err)
	}
	r, g, err := s.Decide(ctx, "carol", req.ID, access.Decision{Approve: true})
	if err != nil || g == nil || r.State != broker.RequestApproved || len(g.Approvers) != 2 {
		t.Fatalf("second distinct approver must grant: %+v %+v %v", r, g, err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	s, st, _ := setup(t)
	for name, in := range map[string]struct {
		user string
		req  access.NewRequest
		code string
	}{
		"unknown target": {"alice", access.NewRequest{Target: "nope", Role: "ro", Duration: time.Hour, Reason: "x"}, "unknown_target"},
		"unknown role":   {"alice", access.NewRequest{Target: "db", Role: "admin", Duration: time.Hour, Reason: "x"}, "unknown_role"},
		"too long":       {"alice", access.NewRequest{Target: "db", Role: "ro", Duration: 3 * time.Hour, Reason: "x"}, "duration_exceeds_max"},
		"no reason":      {"alice", access.NewRequest{Target: "db", Role: "ro", Duration: time.Hour}, "reason_required"},
		"not requester":  {"bob", access.NewRequest{Target: "db", Role: "ro", Duration: time.Hour, Reason: "x"}, "not_requester"},
	} {
		if _, err := s.Create(ctx, in.user, in.req); code(err) != in.code {
			t.Errorf("%s: want %s, got %v", name, in.code, err)
		}
	}
	rs, _ := s.ListRequests(ctx, broker.RequestFilter{})
	if len(rs) != 0 {
		t.Fatalf("refused requests were stored: %v", rs)
	}
	if n := len(auditActions(t, st)); n != 5 {
		t.Fatalf("want 5 audited refusals, got %d", n)
	}
}

func TestRequestExpiresAndRevoke(t *testing.T) {
	ctx := context.Background()
	s, _, c := setup(t)
	req, _ := s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "ro", Duration: time.Hour, Reason: "x"})
	c.t = req.ExpiresAt
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.GetRequest(ctx, req.ID); r.State != broker.RequestExpired {
		t.Fatalf("request not expired at its deadline: %s", r.State)
	}
	if _, _, err := s.Decide(ctx, "bob", req.ID, access.Decision{Approve: true}); code(err) != "request_expired" {
		t.Fatalf("approving an expired request: %v", err)
	}

	req, _ = s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "ro", Duration: time.Hour, Reason: "x"})
	_, g, _ := s.Decide(ctx, "bob", req.ID, access.Decision{Approve: true})
	if _, err := s.Revoke(ctx, "mallory", g.ID, ""); code(err) != "forbidden" {
		t.Fatalf("revoke by outsider: %v", err)
	}
	c.add(time.Minute)
	rg, err := s.Revoke(ctx, "sam", g.ID, "incident over")
	if err != nil || rg.State != broker.GrantRevoked || !rg.EffectiveEnd().Equal(c.t) {
		t.Fatalf("revoke by security admin: %+v %v", rg, err)
	}
	if _, err := s.Revoke(ctx, "alice", g.ID, ""); code(err) != "grant_not_active" {
		t.Fatalf("second revoke: %v", err)
	}
	// The inspector's question: who could reach db during the grant, and after it.
	if gs, _ := s.AccessAt(ctx, "db", c.t.Add(-30*time.Second)); len(gs) != 1 || gs[0].Approvers[0] != "bob" {
		t.Fatalf("access during grant: %+v", gs)
	}
	if gs, _ := s.AccessAt(ctx, "db", c.t); len(gs) != 0 {
		t.Fatalf("access after revoke: %+v", gs)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
