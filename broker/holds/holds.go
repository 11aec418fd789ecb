// Package holds keeps statements held by the PostgreSQL proxy's guardrails
// until an approver decides them. A hold is bound to one session and to the
// SHA-256 of the exact statement text and its parameters; its decision is
// delivered once, to the statement that opened it, and a hold that is not
// decided in time is denied.
package holds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Hold states.
const (
	Pending  = "pending"
	Approved = "approved"
	Denied   = "denied"
	Expired  = "expired"
	// Abandoned: the session ended (or the client cancelled) before a
	// decision.
	Abandoned = "abandoned"
)

// Request describes a held statement.
type Request struct {
	Session  string `json:"session"`
	GrantID  string `json:"grant_id"`
	User     string `json:"user"`
	Target   string `json:"target"`
	Role     string `json:"role"`
	Database string `json:"database"`
	// Text is the exact statement text the client sent.
	Text string `json:"text"`
	// Params is the number of bind parameters (their values are never
	// shown; they are bound through Digest).
	Params int `json:"params"`
	// Digest is the hex SHA-256 of the text and the parameters.
	Digest string `json:"digest"`
	// Rules are the guardrail rules the statement touched.
	Rules []string `json:"rules"`
	// Estimate is the planner's estimate of rows affected or returned;
	// -1 when unknown (EstimateNote says why).
	Estimate     int64  `json:"estimate"`
	EstimateNote string `json:"estimate_note,omitempty"`
	// Timeout bounds the wait; the hold is denied after it.
	Timeout time.Duration `json:"-"`
}

// Hold is a held statement and its state.
type Hold struct {
	ID string `json:"id"`
	Request
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// Decision is what the held statement gets.
type Decision struct {
	ID       string
	Approved bool
	// By is the approver; empty for a timeout.
	By     string
	Reason string
	// TimedOut is set when no one decided in time.
	TimedOut bool
}

// Errors of Decide.
var (
	ErrNotFound  = errors.New("holds: no such hold")
	ErrDecided   = errors.New("holds: hold already decided")
	ErrOwnHold   = errors.New("holds: a user may not decide a hold of their own session")
	ErrNoTimeout = errors.New("holds: request without timeout")
)

// Notifier tells approvers about holds (Slack, the web UI's live feed).
// Implementations must not block.
type Notifier interface {
	HoldOpened(h Hold)
	HoldDecided(h Hold)
}

// Store holds statements in memory: a hold lives as long as the session
// waiting on it, so it does not outlive the broker process.
type Store struct {
	mu      sync.Mutex
	holds   map[string]*entry
	notify  []Notifier
	now     func() time.Time
	keepFor time.Duration
}

type entry struct {
	h    Hold
	done chan struct{}
}

// New returns an empty store. Decided holds stay listed for keep (default
// 1h) so approvers and auditors can see the outcome.
func New(keep time.Duration) *Store {
	if keep <= 0 {
		keep = time.Hour
	}
	return &Store{holds: map[string]*entry{}, now: time.Now, keepFor: keep}
}

// AddNotifier adds a notifier; call before the store is used.
func (s *Store) AddNotifier(n Notifier) { s.notify = append(s.notify, n) }

// Hold opens a hold for req and waits for its decision, the timeout or
// ctx. The decision is delivered to this call only: a second statement,
// even with the same text, opens a hold of its own.
func (s *Store) Hold(ctx context.Context, req Request) (Decision, error) {
	if req.Timeout <= 0 {
		return Decision{}, ErrNoTimeout
	}
	id, err := newID()
	if err != nil {
		return Decision{}, err
	}
	now := s.now().UTC()
	e := &entry{h: Hold{ID: id, Request: req, State: Pending, Created: now, Expires: now.Add(req.Timeout)},
		done: make(chan struct{})}
	s.mu.Lock()
	s.gc(now)
	s.holds[id] = e
	opened := e.h
	s.mu.Unlock()
	for _, n := range s.notify {
		n.HoldOpened(opened)
	}
	t := time.NewTimer(req.Timeout)
	defer t.Stop()
	select {
	case <-e.done:
	case <-t.C:
		s.finish(e, Expired, "", "no decision within "+req.Timeout.String())
	case <-ctx.Done():
		s.finish(e, Abandoned, "", "session ended or statement cancelled")
	}
	s.mu.Lock()
	h := e.h
	s.mu.Unlock()
	return Decision{ID: id, Approved: h.State == Approved, By: h.DecidedBy, Reason: h.Reason, TimedOut: h.State == Expired}, nil
}

// finish moves a pending hold to its final state; it reports whether it
// did (false when it was decided already).
func (s *Store) finish(e *entry, state, by, reason string) bool {
	s.mu.Lock()
	if e.h.State != Pending {
		s.mu.Unlock()
		return false
	}
	e.h.State, e.h.DecidedBy, e.h.Reason, e.h.DecidedAt = state, by, reason, s.now().UTC()
	h := e.h
	close(e.done)
	s.mu.Unlock()
	for _, n := range s.notify {
		n.HoldDecided(h)
	}
	return true
}

// Decide approves or denies a pending hold as approver. Whether approver
// may decide holds of the hold's target and role is the caller's check;
// Decide refuses the session's own user.
func (s *Store) Decide(id, approver string, approve bool, reason string) (Hold, error) {
	s.mu.Lock()
	e, ok := s.holds[id]
	s.mu.Unlock()
	if !ok {
		return Hold{}, ErrNotFound
	}
	if approver == "" || approver == e.h.User {
		return Hold{}, ErrOwnHold
	}
	state := Denied
	if approve {
		state = Approved
	}
	if !s.finish(e, state, approver, reason) {
		return s.mustGet(id), fmt.Errorf("%w (%s)", ErrDecided, s.mustGet(id).State)
	}
	return s.mustGet(id), nil
}

// Get returns a hold.
func (s *Store) Get(id string) (Hold, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.holds[id]
	if !ok {
		return Hold{}, false
	}
	return e.h, true
}

func (s *Store) mustGet(id string) Hold { h, _ := s.Get(id); return h }

// List returns the holds, pending first, newest first.
func (s *Store) List() []Hold {
	s.mu.Lock()
	s.gc(s.now().UTC())
	out := make([]Hold, 0, len(s.holds))
	for _, e := range s.holds {
		out = append(out, e.h)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Hold) int {
		if (a.State == Pending) != (b.State == Pending) {
			if a.State == Pending {
				return -1
			}
			return 1
		}
		return b.Created.Compare(a.Created)
	})
	return out
}

// gc drops decided holds older than keepFor. Callers hold mu.
func (s *Store) gc(now time.Time) {
	for id, e := range s.holds {
		if e.h.State != Pending && now.Sub(e.h.DecidedAt) > s.keepFor {
			delete(s.holds, id)
		}
	}
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("holds: id: %w", err)
	}
	return "hold-" + hex.EncodeToString(b[:]), nil
}
