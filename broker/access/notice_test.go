package access_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

type endingRecorder struct {
	mu  sync.Mutex
	got []string
}

func (e *endingRecorder) RequestChanged(context.Context, broker.Request) {}
func (e *endingRecorder) GrantChanged(context.Context, broker.Grant)     {}
func (e *endingRecorder) GrantEndingSoon(_ context.Context, g broker.Grant) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, g.ID+"@"+g.EndsAt.Format("15:04"))
}

func (e *endingRecorder) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got)
}

func countAudit(t *testing.T, st broker.Store, action string) int {
	t.Helper()
	n := 0
	_ = st.View(context.Background(), func(tx broker.Tx) error {
		rs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: action})
		n = len(rs)
		return err
	})
	return n
}

// TestEndingNotice: the notice goes out once, ten minutes before the end,
// whatever the number of sweeps and of services sharing the store (a
// restart, a second replica); an extension earns one more before the new
// end; notify.grant_ending_before: 0 turns it off.
func TestEndingNotice(t *testing.T) {
	ctx := context.Background()
	s, st, c, cfg := setupCfg(t)
	rec := &endingRecorder{}
	s.AddNotifier(rec)
	// A second broker on the same store, with its own notifier.
	other := &endingRecorder{}
	s2 := access.New(access.Options{Config: cfg, Store: st, Audit: audit.NewLog(st), Now: c.now, Notifiers: []access.Notifier{other}})

	g := granted(t, s, time.Hour)
	c.add(49 * time.Minute)
	if err := s.NoticeEnding(ctx); err != nil || rec.count() != 0 {
		t.Fatalf("notice 11 minutes before the end: %v %v", rec.got, err)
	}
	c.add(time.Minute + time.Second)
	for range 3 {
		for _, svc := range []*access.Service{s, s2} {
			if err := svc.NoticeEnding(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := rec.count() + other.count(); n != 1 || countAudit(t, st, "grant.ending_notice") != 1 {
		t.Fatalf("notices sent: %d here, %d on the other broker, %d audited; want 1", rec.count(), other.count(),
			countAudit(t, st, "grant.ending_notice"))
	}

	ext, err := s.Extend(ctx, "alice", access.NewExtension{GrantID: g.ID, Duration: 30 * time.Minute, Reason: "more"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Decide(ctx, "bob", ext.ID, access.Decision{Approve: true}); err != nil {
		t.Fatal(err)
	}
	_ = s.NoticeEnding(ctx)
	if n := rec.count(); n != 1 {
		t.Fatalf("a notice right after an extension to 39 minutes: %d", n)
	}
	c.add(30 * time.Minute)
	_ = s2.NoticeEnding(ctx)
	_ = s.NoticeEnding(ctx)
	if n := rec.count() + other.count(); n != 2 {
		t.Fatalf("notices before the new end: %d, want 2 in all", n)
	}

	// Off.
	off := config.Duration(0)
	cfg.Notify.GrantEndingBefore = &off
	g2 := granted(t, s, 5*time.Minute)
	_ = s.NoticeEnding(ctx)
	for _, got := range rec.got {
		if got[:len(g2.ID)] == g2.ID {
			t.Fatalf("notice sent with notify.grant_ending_before: 0")
		}
	}
}
