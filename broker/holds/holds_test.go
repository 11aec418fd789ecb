package holds

import (
	"context"
	"errors"
	"testing"
	"time"
)

type feed chan Hold

func (f feed) HoldOpened(h Hold) { f <- h }
func (f feed) HoldDecided(Hold)  {}

func open(t *testing.T, s *Store, f feed, req Request) (Hold, chan Decision) {
	t.Helper()
	out := make(chan Decision, 1)
	go func() {
		d, err := s.Hold(context.Background(), req)
		if err != nil {
			t.Error(err)
		}
		out <- d
	}()
	select {
	case h := <-f:
		return h, out
	case <-time.After(5 * time.Second):
		t.Fatal("hold not opened")
	}
	return Hold{}, nil
}

func req(session, user, text string) Request {
	return Request{Session: session, User: user, Target: "db", Role: "rw", Text: text, Digest: text, Timeout: time.Minute}
}

// An approval reaches only the hold it was given for: another session's
// hold of the same statement stays pending, and a decided hold cannot be
// decided again.
func TestHoldBoundAndSingleUse(t *testing.T) {
	s := New(0)
	f := make(feed, 4)
	s.AddNotifier(f)
	a, da := open(t, s, f, req("ses_a", "alice", "DELETE FROM t"))
	b, db := open(t, s, f, req("ses_b", "carol", "DELETE FROM t"))
	if a.ID == b.ID {
		t.Fatal("two holds share an ID")
	}
	if _, err := s.Decide(a.ID, "alice", true, ""); !errors.Is(err, ErrOwnHold) {
		t.Fatalf("own hold decided: %v", err)
	}
	if _, err := s.Decide(a.ID, "", true, ""); !errors.Is(err, ErrOwnHold) {
		t.Fatalf("anonymous decision: %v", err)
	}
	if _, err := s.Decide(a.ID, "bob", true, "ok"); err != nil {
		t.Fatal(err)
	}
	if d := <-da; !d.Approved || d.By != "bob" || d.ID != a.ID {
		t.Fatalf("decision %+v", d)
	}
	if h, _ := s.Get(b.ID); h.State != Pending {
		t.Fatalf("other session's hold is %s", h.State)
	}
	if _, err := s.Decide(a.ID, "dave", false, ""); !errors.Is(err, ErrDecided) {
		t.Fatalf("second decision: %v", err)
	}
	if _, err := s.Decide("hold-nope", "bob", true, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown hold: %v", err)
	}
	s.Decide(b.ID, "bob", false, "no")
	if d := <-db; d.Approved || d.By != "bob" {
		t.Fatalf("denied decision %+v", d)
	}
	if l := s.List(); len(l) != 2 || l[0].State == Pending {
		t.Fatalf("list %+v", l)
	}
}

func TestHoldTimesOutAsDenied(t *testing.T) {
	s := New(0)
	r := req("ses_a", "alice", "DELETE FROM t")
	r.Timeout = 50 * time.Millisecond
	d, err := s.Hold(context.Background(), r)
	if err != nil || d.Approved || !d.TimedOut {
		t.Fatalf("timeout: %+v %v", d, err)
	}
	if _, err := s.Decide(d.ID, "bob", true, ""); !errors.Is(err, ErrDecided) {
		t.Fatalf("approval after timeout: %v", err)
	}
	if _, err := s.Hold(context.Background(), Request{}); !errors.Is(err, ErrNoTimeout) {
		t.Fatalf("no timeout: %v", err)
	}
}

func TestHoldAbandonedWithSession(t *testing.T) {
	s := New(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := s.Hold(ctx, req("ses_a", "alice", "DELETE FROM t"))
	if err != nil || d.Approved || d.TimedOut {
		t.Fatalf("abandoned: %+v %v", d, err)
	}
	if h, _ := s.Get(d.ID); h.State != Abandoned {
		t.Fatalf("state %s", h.State)
	}
}
