package access_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	bclock "github.com/custos-pam/custos/broker/clock"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// The scheduler ends a grant when its real length is over, even though
// the wall clock, stepped back an hour during the grant, still shows an
// hour of it left; the grant.expire record says how much. Time passing
// without a step changes nothing early.
func TestSweepEndsGrantWhenClockSteppedBack(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	wall := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var mono time.Duration
	clk := bclock.New(bclock.Options{Wall: func() time.Time { return wall }, Mono: func() time.Duration { return mono }})
	s := access.New(access.Options{Config: cfg, Store: st, Audit: audit.NewLog(st), Clock: clk})
	pass := func(d time.Duration) { wall, mono = wall.Add(d), mono+d }

	req, err := s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "ro", Duration: 2 * time.Hour, Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, g, err := s.Decide(ctx, "bob", req.ID, access.Decision{Approve: true})
	if err != nil || g == nil {
		t.Fatalf("approve: %v %v", g, err)
	}
	pass(30 * time.Minute)
	wall = wall.Add(-time.Hour) // stepped back
	state := func() broker.GrantState {
		t.Helper()
		if err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		gg, err := s.GetGrant(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		return gg.State
	}
	pass(90*time.Minute - time.Second)
	if st := state(); st != broker.GrantActive {
		t.Fatalf("grant %s a second before its real end", st)
	}
	if _, err := s.ActiveGrantAs(ctx, "alice", "db", "ro"); err != nil {
		t.Fatalf("active grant a second before its real end: %v", err)
	}
	pass(time.Second)
	if st := state(); st != broker.GrantExpired {
		t.Fatalf("grant %s at its real end, with the wall clock an hour behind", st)
	}
	if _, err := s.ActiveGrantAs(ctx, "alice", "db", "ro"); broker.CodeOf(err) != "no_active_grant" {
		t.Fatalf("active grant after its real end: %v", err)
	}
	var left any
	err = st.View(ctx, func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{})
		for _, r := range recs {
			var d map[string]any
			if r.Action == "grant.expire" && json.Unmarshal(r.Details, &d) == nil {
				left = d["wall_clock_left_ms"]
			}
		}
		return err
	})
	if err != nil || left != float64(time.Hour/time.Millisecond) {
		t.Fatalf("grant.expire record: wall_clock_left_ms %v, %v", left, err)
	}
	t.Logf("grant.expire: wall_clock_left_ms %v", left)
}
