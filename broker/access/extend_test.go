package access_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// setupCfg is setup, also returning the config so a test can tighten a
// policy after requests were made.
func setupCfg(t *testing.T) (*access.Service, broker.Store, *clock, *config.Config) {
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
	return access.New(access.Options{Config: cfg, Store: st, Audit: audit.NewLog(st), Now: c.now}), st, c, cfg
}

// granted has alice request db/ro for d and bob approve it.
func granted(t *testing.T, s *access.Service, d time.Duration) broker.Grant {
	t.Helper()
	ctx := context.Background()
	req, err := s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "ro", Duration: d, Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, g, err := s.Decide(ctx, "bob", req.ID, access.Decision{Approve: true, Via: "cli"})
	if err != nil || g == nil {
		t.Fatalf("grant: %v", err)
	}
	return *g
}

func getGrant(t *testing.T, s *access.Service, id string) broker.Grant {
	t.Helper()
	g, err := s.GetGrant(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestExtendApproved(t *testing.T) {
	ctx := context.Background()
	s, st, c, _ := setupCfg(t)
	g := granted(t, s, time.Hour)
	c.add(10 * time.Minute)

	ext, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 30 * time.Minute, Reason: "INC-1 needs longer"})
	if err != nil {
		t.Fatal(err)
	}
	if !ext.IsExtension() || ext.Extends != g.ID || !ext.GrantEndsAt.Equal(g.EndsAt) || ext.Required != 1 || ext.Ticket != g.Ticket {
		t.Fatalf("extension request: %+v", ext)
	}
	// The approver sees it among the requests they may decide.
	pending, err := s.PendingFor(ctx, "bob")
	if err != nil || len(pending) != 1 || pending[0].Extends != g.ID {
		t.Fatalf("bob's pending: %+v %v", pending, err)
	}
	// Never one's own, even for a requester who is also an approver.
	if _, _, err := s.Decide(ctx, "alice", ext.ID, access.Decision{Approve: true}); code(err) != "self_approval" {
		t.Fatalf("self-approval of an extension: %v", err)
	}
	if _, _, err := s.Decide(ctx, "mallory", ext.ID, access.Decision{Approve: true}); code(err) != "not_approver" {
		t.Fatalf("non-approver: %v", err)
	}
	req, out, err := s.Decide(ctx, "carol", ext.ID, access.Decision{Approve: true, Via: "web"})
	if err != nil || req.State != broker.RequestApproved || out == nil || out.ID != g.ID {
		t.Fatalf("approve extension: %+v %+v %v", req, out, err)
	}
	got := getGrant(t, s, g.ID)
	if want := g.EndsAt.Add(30 * time.Minute); !got.EndsAt.Equal(want) || !got.StartsAt.Equal(g.StartsAt) {
		t.Fatalf("extended grant ends %v, want %v", got.EndsAt, want)
	}
	if !slices.Equal(got.Approvers, []string{"bob", "carol"}) || !slices.Equal(got.Extensions, []string{ext.ID}) {
		t.Fatalf("extended grant: approvers %v, extensions %v", got.Approvers, got.Extensions)
	}
	// No second grant was made.
	if gs, _ := s.ListGrants(ctx, broker.GrantFilter{}); len(gs) != 1 {
		t.Fatalf("grants after an extension: %d", len(gs))
	}
	var rec broker.AuditRecord
	_ = st.View(ctx, func(tx broker.Tx) error {
		rs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: "grant.extend"})
		if len(rs) == 1 {
			rec = rs[0]
		}
		return err
	})
	var det map[string]any
	_ = json.Unmarshal(rec.Details, &det)
	if det["old_ends_at"] != g.EndsAt.Format(time.RFC3339Nano) || det["new_ends_at"] != got.EndsAt.Format(time.RFC3339Nano) ||
		det["extension_request_id"] != ext.ID {
		t.Fatalf("grant.extend audit: %+v", rec)
	}
	auditActions(t, st) // chain intact
}

func TestExtendDeniedKeepsEnd(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := setupCfg(t)
	g := granted(t, s, time.Hour)
	ext, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 30 * time.Minute, Reason: "more"})
	if err != nil {
		t.Fatal(err)
	}
	req, out, err := s.Decide(ctx, "bob", ext.ID, access.Decision{Approve: false, Comment: "no"})
	if err != nil || req.State != broker.RequestDenied || out != nil {
		t.Fatalf("deny: %+v %v %v", req, out, err)
	}
	if got := getGrant(t, s, g.ID); !got.EndsAt.Equal(g.EndsAt) {
		t.Fatalf("denied extension moved the end to %v", got.EndsAt)
	}
}

// TestExtendRefused is the attacker's table: what an extension must not do.
func TestExtendRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		actor string
		prep  func(t *testing.T, s *access.Service, c *clock, g broker.Grant) string // returns the grant id
		dur   time.Duration
		code  string
	}{
		{name: "past max_duration at once", actor: "alice", dur: 61 * time.Minute, code: "extension_exceeds_max"},
		{name: "another user's grant, not visible", actor: "mallory", dur: time.Minute, code: "not_found"},
		{name: "another user's grant, visible to its approver", actor: "carol", dur: time.Minute, code: "forbidden"},
		{name: "unknown grant", actor: "alice", dur: time.Minute, code: "not_found",
			prep: func(*testing.T, *access.Service, *clock, broker.Grant) string { return "gr_none" }},
		{name: "revoked grant", actor: "alice", dur: time.Minute, code: "grant_not_active",
			prep: func(t *testing.T, s *access.Service, _ *clock, g broker.Grant) string {
				if _, err := s.Revoke(ctx, "bob", g.ID, "done"); err != nil {
					t.Fatal(err)
				}
				return g.ID
			}},
		{name: "expired grant", actor: "alice", dur: time.Minute, code: "grant_not_active",
			prep: func(t *testing.T, s *access.Service, c *clock, g broker.Grant) string {
				c.add(time.Hour)
				if err := s.Sweep(ctx); err != nil {
					t.Fatal(err)
				}
				return g.ID
			}},
		{name: "ended but not yet swept", actor: "alice", dur: time.Minute, code: "grant_not_active",
			prep: func(t *testing.T, s *access.Service, c *clock, g broker.Grant) string { c.add(time.Hour); return g.ID }},
		{name: "second pending extension", actor: "alice", dur: time.Minute, code: "extension_pending",
			prep: func(t *testing.T, s *access.Service, _ *clock, g broker.Grant) string {
				if _, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: time.Minute, Reason: "x"}); err != nil {
					t.Fatal(err)
				}
				return g.ID
			}},
		{name: "chained past max_duration", actor: "alice", dur: 20 * time.Minute, code: "extension_exceeds_max",
			prep: func(t *testing.T, s *access.Service, _ *clock, g broker.Grant) string {
				ext, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 45 * time.Minute, Reason: "x"})
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.Decide(ctx, "bob", ext.ID, access.Decision{Approve: true}); err != nil {
					t.Fatal(err)
				}
				return g.ID
			}},
		{name: "no reason where the role requires one", actor: "alice", dur: time.Minute, code: "reason_required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, c, _ := setupCfg(t)
			g := granted(t, s, time.Hour) // ro: max_duration 2h
			id := g.ID
			if tc.prep != nil {
				id = tc.prep(t, s, c, g)
			}
			reason := "INC-1"
			if tc.code == "reason_required" {
				reason = ""
			}
			before := getGrant(t, s, g.ID)
			_, err := s.Extend(ctx, tc.actor, access.NewExtension{GrantID: id, Duration: tc.dur, Reason: reason})
			if code(err) != tc.code {
				t.Fatalf("extend: got %v (%s), want %s", err, code(err), tc.code)
			}
			if after := getGrant(t, s, g.ID); !after.EndsAt.Equal(before.EndsAt) {
				t.Fatalf("a refused extension moved the end")
			}
		})
	}
}

// TestExtendApprovalRechecks: what held when the extension was asked for
// is checked again when it is approved.
func TestExtendApprovalRechecks(t *testing.T) {
	ctx := context.Background()
	t.Run("grant revoked while pending", func(t *testing.T) {
		s, _, _, _ := setupCfg(t)
		g := granted(t, s, time.Hour)
		ext, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 10 * time.Minute, Reason: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revoke(ctx, "sam", g.ID, "incident over"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Decide(ctx, "bob", ext.ID, access.Decision{Approve: true}); code(err) != "grant_not_active" {
			t.Fatalf("approving an extension of a revoked grant: %v", err)
		}
		if got := getGrant(t, s, g.ID); got.State != broker.GrantRevoked || !got.EndsAt.Equal(g.EndsAt) {
			t.Fatalf("grant after the refused approval: %+v", got)
		}
	})
	t.Run("grant ended while pending", func(t *testing.T) {
		s, _, c, _ := setupCfg(t)
		g := granted(t, s, 5*time.Minute)
		ext, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 10 * time.Minute, Reason: "x"})
		if err != nil {
			t.Fatal(err)
		}
		c.add(6 * time.Minute)
		if _, _, err := s.Decide(ctx, "bob", ext.ID, access.Decision{Approve: true}); code(err) != "grant_not_active" {
			t.Fatalf("approving an extension of an ended grant: %v", err)
		}
	})
	t.Run("max_duration tightened while pending", func(t *testing.T) {
		s, _, _, cfg := setupCfg(t)
		g := granted(t, s, time.Hour)
		ext, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 50 * time.Minute, Reason: "x"})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Targets[0].Roles[0].Policy.MaxDuration = config.Duration(90 * time.Minute)
		if _, _, err := s.Decide(ctx, "bob", ext.ID, access.Decision{Approve: true}); code(err) != "extension_exceeds_max" {
			t.Fatalf("approving past the current max_duration: %v", err)
		}
		if got := getGrant(t, s, g.ID); !got.EndsAt.Equal(g.EndsAt) {
			t.Fatalf("grant moved to %v", got.EndsAt)
		}
	})
}
