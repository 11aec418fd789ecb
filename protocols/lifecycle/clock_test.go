package lifecycle_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/clock"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
)

// steppedWall is the system clock plus an offset the test steps, as an
// administrator's `date -s` or a bad time source would.
type steppedWall struct{ offset atomic.Int64 }

func (w *steppedWall) now() time.Time           { return time.Now().Add(time.Duration(w.offset.Load())) }
func (w *steppedWall) step(d time.Duration)     { w.offset.Add(int64(d)) }
func (w *steppedWall) clock() *clock.Clock      { return clock.New(clock.Options{Wall: w.now}) }
func (w *steppedWall) opt(o *lifecycle.Options) { o.Clock = w.clock() }

// A session's grant ends by the broker's Clock: a wall clock stepped
// forward past the grant's end ends the session within about a second
// of the step; one stepped back does not extend it, the session ends
// when the grant's real length is over. The sweep is an hour away, so
// only the session's own watch can end it.
func TestGrantEndUnderClockSteps(t *testing.T) {
	for _, c := range []struct {
		name         string
		length, step time.Duration
		stepAt       time.Duration
		// endAt is when the session must end, after its admission.
		endAt time.Duration
	}{
		{"forward 1h", time.Hour, time.Hour, 300 * time.Millisecond, 300 * time.Millisecond},
		{"back 1h", 1500 * time.Millisecond, -time.Hour, 300 * time.Millisecond, 1500 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &steppedWall{}
			core := newCore(t, time.Hour, w.opt)
			now := w.now()
			g := broker.Grant{ID: broker.NewID("grt"), User: "alice", Target: "db1", Role: "rw", State: broker.GrantActive,
				StartsAt: now.Add(-time.Minute), EndsAt: now.Add(c.length)}
			core.grants.Set(g)
			s, err := core.Open(lifecycle.Start{Grant: g, Target: &config.Target{Name: "db1", Kind: "postgres"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.StartRecording(context.Background()); err != nil {
				t.Fatal(err)
			}
			admitted := time.Now()
			if err := s.Admit(); err != nil {
				t.Fatal(err)
			}
			go func() { <-s.Context().Done(); s.Stopped() }()
			time.Sleep(c.stepAt)
			w.step(c.step)
			select {
			case <-s.Context().Done():
			case <-time.After(c.endAt + 5*time.Second):
				t.Fatalf("session still live %v after admission", time.Since(admitted))
			}
			took := time.Since(admitted)
			if took < c.endAt-50*time.Millisecond || took > c.endAt+1200*time.Millisecond {
				t.Errorf("session ended %v after admission, want at %v (within the wall-clock check)", took, c.endAt)
			}
			if cause, ok := lifecycle.AsCause(s.Cause()); !ok || cause.Reason != "grant expired" {
				t.Errorf("cause = %v", s.Cause())
			}
		})
	}
}
