package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
)

// store holds grants by ID and collects audit records.
type store struct {
	mu      sync.Mutex
	grants  map[string]broker.Grant
	entries []audit.Entry
}

func (s *store) GetGrant(_ context.Context, id string) (broker.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return g, errors.New("no grant " + id)
	}
	return g, nil
}

func (s *store) Append(_ context.Context, e audit.Entry) (broker.AuditRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = append(s.entries, e)
	return broker.AuditRecord{}, nil
}

func (s *store) actions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.entries {
		out = append(out, e.Action)
	}
	return out
}

func (s *store) count(action string) int {
	n := 0
	for _, a := range s.actions() {
		if a == action {
			n++
		}
	}
	return n
}

// rec is a recording that records nothing and fails on demand.
type rec struct {
	nopRecording
	done chan struct{}
}

func (r *rec) Done() <-chan struct{} { return r.done }

func grant(id string) broker.Grant {
	now := time.Now()
	return broker.Grant{ID: id, User: "alice", Target: "db", Role: "rw", State: broker.GrantActive,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}
}

func newCore(t *testing.T, startErr error) (*Core, *store, *rec) {
	t.Helper()
	st := &store{grants: map[string]broker.Grant{}}
	r := &rec{done: make(chan struct{})}
	c, err := New(Config{Protocol: "test", Handle: func(net.Conn) {}, Grants: st, Audit: st,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Recorder: RecorderFunc(func(context.Context, event.Header) (Recording, error) {
			if startErr != nil {
				return nil, startErr
			}
			return r, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, st, r
}

func open(t *testing.T, c *Core, g broker.Grant, tgt *config.Target) *Session {
	t.Helper()
	s, err := c.Open(Start{Grant: g, Target: tgt, Role: &tgt.Roles[0], ClientAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var target = &config.Target{Name: "db", Kind: "postgres", Roles: []config.Role{{Name: "rw"}}}

func wantCause(t *testing.T, s *Session, kind Kind) *Cause {
	t.Helper()
	select {
	case <-s.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("session still running")
	}
	c, ok := AsCause(s.Cause())
	if !ok || c.Kind != kind {
		t.Fatalf("cause %v, want kind %d", s.Cause(), kind)
	}
	return c
}

func TestAdmitRechecksTheSessionsOwnGrant(t *testing.T) {
	c, st, _ := newCore(t, nil)
	revoked, other := grant("grt_a"), grant("grt_b")
	revoked.State, revoked.RevokedAt, revoked.RevokeReason = broker.GrantRevoked, time.Now(), "INC-1 closed"
	st.grants[revoked.ID], st.grants[other.ID] = revoked, other
	// The session was opened on grt_a before it was revoked; grt_b, for
	// the same user, target and role, must not keep it alive.
	s := open(t, c, grant("grt_a"), target)
	if err := s.StartRecording(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := s.Admit()
	if cause, ok := AsCause(err); !ok || cause.Kind != Revoked || cause.Reason != "grant revoked: INC-1 closed" {
		t.Fatalf("Admit: %v", err)
	}
	s.Refuse(broker.OutcomeDenied, err.Error(), nil)
	if len(c.Sessions()) != 0 || st.count(ActionRefused) != 1 || st.count(ActionStart) != 0 {
		t.Fatalf("sessions %v, audit %v", c.Sessions(), st.actions())
	}

	ok := open(t, c, other, target)
	if err := ok.Admit(); err != nil {
		t.Fatalf("active grant refused: %v", err)
	}
	if st.count(ActionStart) != 1 {
		t.Fatalf("audit %v", st.actions())
	}
}

func TestRevocationReachesASessionBeingAdmitted(t *testing.T) {
	c, st, _ := newCore(t, nil)
	g := grant("grt_a")
	st.grants[g.ID] = g
	s := open(t, c, g, target)
	if n := c.TerminateGrant(g.ID, "revoked by carol"); n != 1 {
		t.Fatalf("TerminateGrant found %d sessions", n)
	}
	if cause := wantCause(t, s, Revoked); cause.Reason != "revoked by carol" || cause.State() != "terminated" {
		t.Fatalf("cause %+v", cause)
	}
	if err := s.Admit(); err == nil {
		t.Fatal("a revoked session was admitted")
	}
	if st.count(ActionTerminate) != 1 {
		t.Fatalf("audit %v", st.actions())
	}
	if err := c.Terminate("ses_nope", "x"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("Terminate unknown: %v", err)
	}
}

func TestTimersAndRecordingEndSessions(t *testing.T) {
	t.Run("grant end", func(t *testing.T) {
		c, st, _ := newCore(t, nil)
		g := grant("grt_a")
		g.EndsAt = time.Now().Add(100 * time.Millisecond)
		st.grants[g.ID] = g
		s := open(t, c, g, target)
		if err := s.Admit(); err != nil {
			t.Fatal(err)
		}
		if c := wantCause(t, s, Revoked); c.Reason != "grant expired" {
			t.Fatalf("cause %+v", c)
		}
	})
	t.Run("idle", func(t *testing.T) {
		c, st, _ := newCore(t, nil)
		g := grant("grt_a")
		st.grants[g.ID] = g
		tgt := &config.Target{Name: "db", Roles: []config.Role{{Name: "rw", IdleTimeout: config.Duration(150 * time.Millisecond)}}}
		s := open(t, c, g, tgt)
		if err := s.Admit(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for range 3 {
			time.Sleep(80 * time.Millisecond)
			s.Touch()
		}
		if c := wantCause(t, s, Idle); c.IdleFor != 150*time.Millisecond || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("cause %+v after %s", c, time.Since(start))
		}
	})
	t.Run("recording fails", func(t *testing.T) {
		c, st, r := newCore(t, nil)
		g := grant("grt_a")
		st.grants[g.ID] = g
		s := open(t, c, g, target)
		if err := s.StartRecording(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Admit(); err != nil {
			t.Fatal(err)
		}
		close(r.done)
		if c := wantCause(t, s, RecordingFailed); c.State() != "interrupted" {
			t.Fatalf("cause %+v", c)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		c, st, _ := newCore(t, nil)
		g := grant("grt_a")
		st.grants[g.ID] = g
		s := open(t, c, g, target)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- c.Serve(context.Background(), ln) }()
		time.Sleep(20 * time.Millisecond)
		go c.Close()
		wantCause(t, s, Shutdown)
		s.Finish(End{State: "interrupted", By: "system", Reason: "broker shutting down"})
		if err := <-served; err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
		if _, err := c.Open(Start{Grant: g, Target: target}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Open after Close: %v", err)
		}
	})
}

func TestRecordingStartFailure(t *testing.T) {
	failOpen := &config.Target{Name: "db", Roles: []config.Role{{Name: "rw"}}, Recording: config.TargetRecording{FailOpen: true}}
	for _, tc := range []struct {
		name   string
		target *config.Target
		err    error
		audit  int
	}{
		{"fail closed refuses", target, ErrRecordingUnavailable, 0},
		{"fail open continues, audited", failOpen, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := newCore(t, errors.New("store down"))
			st := c.cfg.Audit.(*store)
			s := open(t, c, grant("grt_a"), tc.target)
			if err := s.StartRecording(context.Background()); !errors.Is(err, tc.err) {
				t.Fatalf("StartRecording: %v, want %v", err, tc.err)
			}
			if st.count(ActionFailOpen) != tc.audit {
				t.Fatalf("audit %v", st.actions())
			}
		})
	}
}

func TestGrantEndReason(t *testing.T) {
	for _, tc := range []struct {
		ev     broker.GrantEvent
		reason string
		ended  bool
	}{
		{broker.GrantEvent{State: broker.GrantActive}, "", false},
		{broker.GrantEvent{State: broker.GrantExpired, Reason: "grant expired"}, "grant expired", true},
		{broker.GrantEvent{State: broker.GrantRevoked, Reason: "revoked by carol"}, "revoked by carol", true},
		{broker.GrantEvent{State: broker.GrantRevoked}, "grant revoked", true},
	} {
		if r, e := GrantEndReason(tc.ev); r != tc.reason || e != tc.ended {
			t.Errorf("%+v: %q %v", tc.ev, r, e)
		}
	}
}
