// Package clock keeps grant ends where they belong when the wall clock
// steps. Grants end at a wall-clock instant (Grant.EndsAt, stored and
// shown in UTC); a broker whose clock is stepped back would keep a grant
// open past its real length, and one stepped forward would end it early.
//
// The rule: a grant ends, for this process, at the earlier of its
// wall-clock end and its monotonic deadline, the instant at which as much
// time has really passed (by the monotonic clock, which steps do not
// move) as its wall-clock end was ahead when this process first learned
// of it. A step back therefore never extends a grant; a step forward ends
// it early by at most the step. Likewise a grant has started once the
// wall clock or the monotonic clock says so, so a step back does not
// suspend a running grant either. A step made before the process first
// saw the grant cannot be told from a true time; run NTP.
package clock

import (
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Clock reads the wall clock and a monotonic clock and keeps the
// monotonic deadline of each grant this process has seen. It is safe for
// concurrent use. One Clock is shared by every part of a broker that ends
// grants (the expiry scheduler, the proxies), so all use the same
// deadline.
type Clock struct {
	wall func() time.Time
	mono func() time.Duration

	mu   sync.Mutex
	ends map[string]Deadline
}

// Options configure a Clock. Zero fields take the documented defaults.
type Options struct {
	// Wall reads the wall clock. Default: time.Now.
	Wall func() time.Time
	// Mono reads a monotonic clock: the time elapsed since a fixed
	// instant, which steps of the wall clock do not change. Default: the
	// time since New, by the Go runtime's monotonic clock.
	Mono func() time.Duration
}

// New returns a Clock.
func New(o Options) *Clock {
	c := &Clock{wall: o.Wall, mono: o.Mono, ends: map[string]Deadline{}}
	if c.wall == nil {
		c.wall = time.Now
	}
	if c.mono == nil {
		start := time.Now()
		c.mono = func() time.Duration { return time.Since(start) }
	}
	return c
}

// Deadline is a grant's window as this process keeps it.
type Deadline struct {
	// Wall is the grant's wall-clock end.
	Wall time.Time
	// Mono is the monotonic reading (on the Clock's Mono scale) at which
	// the grant's time is really over.
	Mono time.Duration
	// Start and MonoStart are its wall-clock start and the monotonic
	// reading at which it really began.
	Start     time.Time
	MonoStart time.Duration
}

// Now reads the wall clock.
func (c *Clock) Now() time.Time { return c.wall() }

// Grant returns the deadline of g: the one kept since this process first
// saw the grant, so that a later step of the wall clock does not move it.
// An earlier end (a revocation) replaces its end, keeping the earlier
// monotonic deadline. A later end in the store (an approved extension)
// moves both by the extension's length, so a step seen before still
// counts; a step of the clock never changes the grant's recorded end.
func (c *Clock) Grant(g broker.Grant) Deadline {
	end := g.EffectiveEnd()
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.ends[g.ID]
	switch {
	case ok && end.Equal(d.Wall):
		return d
	case ok && end.After(d.Wall):
		d.Mono += end.Sub(d.Wall)
		d.Wall = end
		c.ends[g.ID] = d
		return d
	}
	wall, mono := c.wall(), c.mono()
	nd := Deadline{Wall: end, Mono: mono + end.Sub(wall), Start: g.StartsAt, MonoStart: mono + g.StartsAt.Sub(wall)}
	if ok {
		nd.Mono = min(nd.Mono, d.Mono)
		nd.Start, nd.MonoStart = d.Start, d.MonoStart
	}
	c.ends[g.ID] = nd
	return nd
}

// Left is the time left until d: the earlier of its wall-clock end by the
// wall clock and its monotonic deadline by the monotonic clock. Zero or
// less means the grant is over.
func (c *Clock) Left(d Deadline) time.Duration {
	return min(d.Wall.Sub(c.wall()), d.Mono-c.mono())
}

// Started reports whether d's grant has begun: by the wall clock or by
// the monotonic clock.
func (c *Clock) Started(d Deadline) bool {
	return !c.wall().Before(d.Start) || c.mono() >= d.MonoStart
}

// Over reports whether g is over by the rule (its state aside).
func (c *Clock) Over(g broker.Grant) bool {
	return c.Left(c.Grant(g)) <= 0
}

// Active reports whether g gives access now: active in the store, begun
// and not over by the rule.
func (c *Clock) Active(g broker.Grant) bool {
	if g.State != broker.GrantActive {
		return false
	}
	d := c.Grant(g)
	return c.Started(d) && c.Left(d) > 0
}

// Due returns the grants seen whose deadline has passed, for the expiry
// scheduler, which Forgets them once they are ended in the store.
func (c *Clock) Due() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, d := range c.ends {
		if c.Left(d) <= 0 {
			out = append(out, id)
		}
	}
	return out
}

// Forget drops the deadline of a grant that has ended.
func (c *Clock) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ends, id)
}
