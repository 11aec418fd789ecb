package lifecycle_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
)

// core is a Core with no wire: sessions are opened and admitted by the
// test, as a proxy's handler would.
type core struct {
	*lifecycle.Core
	grants *lifecycletest.Grants
	audit  *lifecycletest.Audit
}

func newCore(t *testing.T, sweep time.Duration, opts ...func(*lifecycle.Options)) *core {
	t.Helper()
	c := &core{grants: &lifecycletest.Grants{}, audit: &lifecycletest.Audit{}}
	o := lifecycle.Options{Recorder: &lifecycletest.Recorder{}, Audit: c.audit, SessionSweep: sweep,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, f := range opts {
		f(&o)
	}
	var err error
	c.Core, err = lifecycle.New(lifecycle.Config{Protocol: "test", Handle: func(net.Conn) {}, Grants: c.grants, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// admit opens and admits a session on a new active grant.
func (c *core) admit(t *testing.T, user string) (*lifecycle.Session, broker.Grant) {
	t.Helper()
	now := time.Now()
	g := broker.Grant{ID: broker.NewID("grt"), User: user, Target: "db1", Role: "rw", State: broker.GrantActive,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}
	c.grants.Set(g)
	s, err := c.Open(lifecycle.Start{Grant: g, Target: &config.Target{Name: "db1", Kind: "postgres"}, ClientAddr: "127.0.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartRecording(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Admit(); err != nil {
		t.Fatal(err)
	}
	// A proxy's relay reports that it stopped once the session ends.
	go func() { <-s.Context().Done(); s.Stopped() }()
	return s, g
}

// revokeQuietly revokes g in the store without any grant event, as a
// revocation on another broker looks while this one's listening
// connection is down.
func (c *core) revokeQuietly(g broker.Grant, reason string) {
	g.State, g.RevokedAt, g.RevokedBy, g.RevokeReason = broker.GrantRevoked, time.Now(), "carol", reason
	c.grants.Set(g)
}

func wantRevokedWithin(t *testing.T, s *lifecycle.Session, within time.Duration, reason string) {
	t.Helper()
	select {
	case <-s.Context().Done():
	case <-time.After(within):
		t.Fatalf("session still live %v after its grant was revoked", within)
	}
	c, ok := lifecycle.AsCause(s.Cause())
	if !ok || c.Kind != lifecycle.Revoked || c.Reason != reason {
		t.Fatalf("cause = %v, want Revoked %q", s.Cause(), reason)
	}
}

// TestSweepEndsSessionRevokedWithoutEvent: nobody tells the Core that a
// grant was revoked; the periodic sweep finds it by the session's grant
// ID and ends the session, audited, while another grant's session goes
// on.
func TestSweepEndsSessionRevokedWithoutEvent(t *testing.T) {
	c := newCore(t, 200*time.Millisecond)
	s, g := c.admit(t, "alice")
	other, _ := c.admit(t, "bob")

	c.revokeQuietly(g, "revoked by carol: INC-7")
	wantRevokedWithin(t, s, time.Second, "revoked by carol: INC-7")
	terms := c.audit.Wait(t, lifecycle.ActionTerminate, broker.OutcomeSuccess, 1)
	if len(terms) != 1 || terms[0].Reason != "revoked by carol: INC-7" || terms[0].Details["grant_id"] != g.ID {
		t.Fatalf("session.terminate records = %+v", terms)
	}
	if other.Context().Err() != nil {
		t.Fatalf("a session on an active grant was ended: %v", other.Cause())
	}
}

// TestSweepEndsExpiredGrant: a grant whose end was moved earlier in the
// store (the timer was set for the old end) ends at the next sweep.
func TestSweepEndsExpiredGrant(t *testing.T) {
	c := newCore(t, 200*time.Millisecond)
	s, g := c.admit(t, "alice")
	g.EndsAt = time.Now().Add(-time.Second)
	c.grants.Set(g)
	wantRevokedWithin(t, s, time.Second, "grant expired")
}

// TestResyncEventRechecksAtOnce: with a sweep far away, a resync event
// (events were missed) makes the Core re-check every session at once.
func TestResyncEventRechecksAtOnce(t *testing.T) {
	c := newCore(t, time.Hour)
	s, g := c.admit(t, "alice")
	c.revokeQuietly(g, "revoked by carol: INC-8")

	events := make(chan broker.GrantEvent, 1)
	go c.WatchGrants(events)
	defer close(events)
	time.Sleep(300 * time.Millisecond)
	if s.Context().Err() != nil {
		t.Fatal("session ended before any re-check")
	}
	events <- broker.GrantEvent{Resync: true}
	wantRevokedWithin(t, s, time.Second, "revoked by carol: INC-8")
}

// TestRecheckKeepsSessionsWhenStoreFails: a lookup error is not an end.
func TestRecheckKeepsSessionsWhenStoreFails(t *testing.T) {
	c := &core{grants: &lifecycletest.Grants{}, audit: &lifecycletest.Audit{}}
	failing := &flakyGrants{Grants: c.grants}
	var err error
	c.Core, err = lifecycle.New(lifecycle.Config{Protocol: "test", Handle: func(net.Conn) {}, Grants: failing,
		Options: lifecycle.Options{Recorder: &lifecycletest.Recorder{}, Audit: c.audit, SessionSweep: time.Hour,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, _ := c.admit(t, "alice")
	failing.err = errors.New("store unavailable")
	if n := c.Recheck(context.Background()); n != 0 || s.Context().Err() != nil {
		t.Fatalf("Recheck ended %d sessions on a store error", n)
	}
	failing.err = broker.ErrNotFound
	if n := c.Recheck(context.Background()); n != 1 {
		t.Fatalf("Recheck ended %d sessions of a grant the store no longer has, want 1", n)
	}
	wantRevokedWithin(t, s, time.Second, "grant not found")
}

// flakyGrants fails lookups with err once it is set.
type flakyGrants struct {
	*lifecycletest.Grants
	err error
}

func (f *flakyGrants) GetGrant(ctx context.Context, id string) (broker.Grant, error) {
	if f.err != nil {
		return broker.Grant{}, f.err
	}
	return f.Grants.GetGrant(ctx, id)
}

func TestGrantEndReasonIgnoresResync(t *testing.T) {
	if _, ended := lifecycle.GrantEndReason(broker.GrantEvent{Resync: true}); ended {
		t.Fatal("a resync event was taken for a grant's end")
	}
}
