package clock

import (
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

func grant(id string, start, end time.Time) broker.Grant {
	return broker.Grant{ID: id, State: broker.GrantActive, StartsAt: start, EndsAt: end}
}

// fake is a wall clock the test steps and a monotonic clock the test
// advances; real time passing moves both.
type fake struct {
	wall time.Time
	mono time.Duration
}

func (f *fake) pass(d time.Duration) { f.wall, f.mono = f.wall.Add(d), f.mono+d }
func (f *fake) step(d time.Duration) { f.wall = f.wall.Add(d) }

func (f *fake) clock() *Clock {
	return New(Options{Wall: func() time.Time { return f.wall }, Mono: func() time.Duration { return f.mono }})
}

// A grant of two minutes, seen at its start; then the wall clock steps
// and time passes. The grant is over exactly when the rule says: the
// earlier of its wall-clock end and its real length.
func TestGrantEndUnderClockSteps(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const length = 2 * time.Minute
	for _, c := range []struct {
		name string
		// before: real time passed before the step; step: the step;
		// overAfter: real time after the start at which the grant is over.
		before, step, overAfter time.Duration
	}{
		{"no step", 30 * time.Second, 0, length},
		{"back 1h: not extended", 30 * time.Second, -time.Hour, length},
		{"back 1s: not extended", 30 * time.Second, -time.Second, length},
		{"forward 1h: ends at the step", 30 * time.Second, time.Hour, 30 * time.Second},
		{"forward 10s: 10s early", 30 * time.Second, 10 * time.Second, length - 10*time.Second},
		{"forward after the end", 3 * time.Minute, time.Hour, length},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fake{wall: start, mono: 5 * time.Hour}
			clk := f.clock()
			g := grant("g1", start, start.Add(length))
			clk.Grant(g) // seen at the start
			f.pass(c.before)
			f.step(c.step)
			elapsed := c.before
			for ; clk.Active(g); elapsed += 100 * time.Millisecond {
				if elapsed > 2*time.Hour {
					t.Fatal("never over")
				}
				f.pass(100 * time.Millisecond)
			}
			want := max(c.overAfter, c.before)
			if elapsed != want {
				t.Errorf("over after %v of real time, want %v", elapsed, want)
			}
			if due := clk.Due(); !slices.Equal(due, []string{"g1"}) {
				t.Errorf("due = %v", due)
			}
			if !clk.Over(g) {
				t.Error("not over when no longer active")
			}
		})
	}
}

// The monotonic deadline is the one taken when the grant was first seen:
// looking it up again after a step back does not move it; an earlier end
// (a revocation) replaces it; Forget drops it.
func TestGrantDeadlineKept(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &fake{wall: start}
	clk := f.clock()
	g := grant("g1", start, start.Add(time.Minute))
	first := clk.Grant(g)
	f.pass(10 * time.Second)
	f.step(-time.Hour)
	if again := clk.Grant(g); again != first {
		t.Fatalf("deadline moved: %+v, then %+v", first, again)
	}
	if left := clk.Left(first); left != 50*time.Second {
		t.Errorf("left after a step back = %v, want 50s", left)
	}
	// The wall clock is now before the grant's start: it is still
	// running, not suspended.
	if !clk.Active(g) {
		t.Error("a running grant is not active after the wall clock stepped back before its start")
	}
	// Revoked now: its end is the wall clock's now, an hour before its
	// first end by that clock; the monotonic deadline only gets earlier.
	g.State, g.RevokedAt = broker.GrantRevoked, f.wall
	revoked := clk.Grant(g)
	if revoked.Wall != f.wall || revoked.Mono > first.Mono || clk.Left(revoked) > 0 || clk.Active(g) {
		t.Errorf("revoked: %+v (first %+v), left %v", revoked, first, clk.Left(revoked))
	}
	clk.Forget("g1")
	g.State = broker.GrantActive
	if d := clk.Grant(g); d.Mono == revoked.Mono {
		t.Error("Forget kept the deadline")
	}
}

// With the default monotonic clock, a wall clock stepped back after the
// grant was seen does not extend it.
func TestDefaultMonotonic(t *testing.T) {
	var step time.Duration
	clk := New(Options{Wall: func() time.Time { return time.Now().Add(step) }})
	d := clk.Grant(grant("g1", time.Now(), time.Now().Add(200*time.Millisecond)))
	step = -time.Hour
	time.Sleep(250 * time.Millisecond)
	if left := clk.Left(d); left > 0 {
		t.Errorf("left %v after the grant's real length, with the wall clock stepped back", left)
	}
}

// An approved extension moves the grant's recorded end later: the
// deadline moves by exactly that much, on both clocks, so a step seen
// before the extension still counts and a step after it changes nothing.
func TestExtensionMovesDeadline(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &fake{wall: start}
	clk := f.clock()
	g := grant("g1", start, start.Add(10*time.Minute))
	clk.Grant(g)
	f.pass(time.Minute)
	f.step(-time.Hour) // not an extension: the recorded end is unchanged
	if left := clk.Left(clk.Grant(g)); left != 9*time.Minute {
		t.Fatalf("left after a step back = %v, want 9m", left)
	}
	g.EndsAt = g.EndsAt.Add(30 * time.Minute) // approved extension
	d := clk.Grant(g)
	if d.Wall != g.EndsAt {
		t.Errorf("extended deadline's wall end %v, want %v", d.Wall, g.EndsAt)
	}
	if left := clk.Left(d); left != 39*time.Minute {
		t.Errorf("left after a 30m extension = %v, want 39m (real time, the step back not counted)", left)
	}
	f.step(2 * time.Hour)
	if left := clk.Left(clk.Grant(g)); left > 0 {
		t.Errorf("a step forward past the extended end leaves %v", left)
	}
}
