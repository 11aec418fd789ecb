package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
)

// admitEnding opens and admits a session on a grant that ends in d.
func (c *core) admitEnding(t *testing.T, d time.Duration) (*lifecycle.Session, broker.Grant) {
	t.Helper()
	now := time.Now()
	g := broker.Grant{ID: broker.NewID("grt"), User: "alice", Target: "db1", Role: "rw", State: broker.GrantActive,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(d)}
	c.grants.Set(g)
	s, err := c.Open(lifecycle.Start{Grant: g, Target: &config.Target{Name: "db1", Kind: "postgres"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartRecording(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Admit(); err != nil {
		t.Fatal(err)
	}
	go func() { <-s.Context().Done(); s.Stopped() }()
	return s, g
}

// TestGrantExtensionRearmsEnd: the grant-end timer armed at admission is
// moved by the grant's "active" event after an extension (and, with the
// event missed, by the sweep); without either the session ends at the
// old end.
func TestGrantExtensionRearmsEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		notify func(c *core, events chan<- broker.GrantEvent, g broker.Grant)
		lives  bool
	}{
		{name: "event", lives: true, notify: func(c *core, events chan<- broker.GrantEvent, g broker.Grant) {
			events <- broker.GrantEvent{GrantID: g.ID, State: broker.GrantActive, Reason: "grant extended"}
		}},
		{name: "missed event, sweep", lives: true, notify: func(*core, chan<- broker.GrantEvent, broker.Grant) {}},
		{name: "not extended", lives: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sweep := time.Hour
			if tc.name == "missed event, sweep" {
				sweep = 100 * time.Millisecond
			}
			c := newCore(t, sweep)
			events := make(chan broker.GrantEvent, 1)
			go c.WatchGrants(events)
			defer close(events)
			s, g := c.admitEnding(t, 700*time.Millisecond)
			if tc.notify != nil {
				g.EndsAt = g.EndsAt.Add(time.Hour)
				c.grants.Set(g)
				tc.notify(c, events, g)
			}
			select {
			case <-s.Context().Done():
				if tc.lives {
					t.Fatalf("session ended at the old end after an extension: %v", s.Cause())
				}
				if cause, ok := lifecycle.AsCause(s.Cause()); !ok || cause.Reason != "grant expired" {
					t.Fatalf("cause = %v", s.Cause())
				}
			case <-time.After(2 * time.Second):
				if !tc.lives {
					t.Fatal("session outlived its grant")
				}
			}
		})
	}
}
