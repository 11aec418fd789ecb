// Package lifecycletest holds in-memory stand-ins for the session core's
// collaborators (grant store, recorder, audit log) for the proxies' tests.
// The proxies' own wire runs for real against real clients and targets.
package lifecycletest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/recorder/event"
)

// Grants holds grants by ID, as the broker's store does.
type Grants struct {
	mu sync.Mutex
	m  map[string]broker.Grant
}

// Set adds or replaces a grant.
func (f *Grants) Set(g broker.Grant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]broker.Grant{}
	}
	f.m[g.ID] = g
}

// Remove drops every grant of user on target.
func (f *Grants) Remove(user, target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, g := range f.m {
		if g.User == user && g.Target == target {
			delete(f.m, id)
		}
	}
}

// Revoke marks one grant revoked now, as the access service does.
func (f *Grants) Revoke(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.m[id]
	g.State, g.RevokedAt = broker.GrantRevoked, time.Now()
	f.m[id] = g
}

// ActiveGrantAs returns the user's active grant on target for role (any
// when ""), the one ending last.
func (f *Grants) ActiveGrantAs(_ context.Context, user, target, role string) (broker.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var best broker.Grant
	for _, g := range f.m {
		if g.User == user && g.Target == target && (role == "" || g.Role == role) &&
			g.State == broker.GrantActive && g.EndsAt.After(best.EndsAt) {
			best = g
		}
	}
	if best.ID == "" {
		return best, errors.New("no active grant for " + target)
	}
	return best, nil
}

// GetGrant returns a grant in whatever state it is.
func (f *Grants) GetGrant(_ context.Context, id string) (broker.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.m[id]
	if !ok {
		return g, errors.New("no grant " + id)
	}
	return g, nil
}

// Recorder keeps recordings in memory.
type Recorder struct {
	mu   sync.Mutex
	recs []*Recording
	// StartErr refuses new recordings; FailAfter makes new recordings fail
	// once they hold that many events (0: never).
	StartErr  error
	FailAfter int
	// Discard keeps no terminal data (benchmarks).
	Discard bool
}

// Start begins a recording with a start event.
func (f *Recorder) Start(_ context.Context, h event.Header) (lifecycle.Recording, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.StartErr != nil {
		return nil, f.StartErr
	}
	r := &Recording{Header: h, failAfter: f.FailAfter, discard: f.Discard, done: make(chan struct{}), start: time.Now()}
	r.events = append(r.events, event.Event{Kind: event.KindStart})
	f.recs = append(f.recs, r)
	return r, nil
}

// Fail sets how new recordings fail: at start, or after n events.
func (f *Recorder) Fail(start error, after int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.StartErr, f.FailAfter = start, after
}

// DiscardData makes new recordings encode terminal data and keep none.
func (f *Recorder) DiscardData() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Discard = true
}

// All returns the recordings started so far.
func (f *Recorder) All() []*Recording {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Recording(nil), f.recs...)
}

// Count is how many recordings started.
func (f *Recorder) Count() int { return len(f.All()) }

// Last returns the latest recording.
func (f *Recorder) Last(t testing.TB) *Recording {
	t.Helper()
	all := f.All()
	if len(all) == 0 {
		t.Fatal("no recording started")
	}
	return all[len(all)-1]
}

// Recording is one session's recording in memory.
type Recording struct {
	Header    event.Header
	start     time.Time
	done      chan struct{}
	mu        sync.Mutex
	events    []event.Event
	closed    bool
	failed    bool
	failAfter int
	discard   bool
	buf       []byte
	// dataBytes counts recorded terminal bytes by kind, kept or not.
	dataBytes map[event.Kind]int64
}

func (r *Recording) Output(ch uint32, p []byte) error { return r.data(event.KindOutput, ch, p) }
func (r *Recording) Stderr(ch uint32, p []byte) error { return r.data(event.KindStderr, ch, p) }
func (r *Recording) Input(ch uint32, p []byte) error  { return r.data(event.KindInput, ch, p) }

// NewRecording returns a recording kept in memory, outside a Recorder;
// with discard it encodes terminal data as a recorder would and keeps
// none (for allocation tests).
func NewRecording(discard bool) *Recording {
	return &Recording{discard: discard, done: make(chan struct{}), start: time.Now()}
}

// Data records terminal or stream bytes of kind k.
func (r *Recording) Data(k event.Kind, ch uint32, p []byte) error { return r.data(k, ch, p) }

func (r *Recording) data(k event.Kind, ch uint32, p []byte) error {
	return r.Record(event.Event{Kind: k, Channel: ch, Data: p})
}

func (r *Recording) Record(e event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("recording closed")
	}
	if !r.failed && r.failAfter > 0 && len(r.events) >= r.failAfter {
		r.failLocked()
	}
	if r.failed {
		return errors.New("spool unwritable")
	}
	e.Offset = time.Since(r.start)
	if e.Kind.Terminal() {
		if r.dataBytes == nil {
			r.dataBytes = map[event.Kind]int64{}
		}
		r.dataBytes[e.Kind] += int64(len(e.Data))
	}
	if r.discard && e.Kind.Terminal() {
		// Encode as a recorder would, and keep nothing.
		r.buf = event.AppendData(r.buf[:0], e.Kind, e.Offset, e.Channel, e.Data)
		return nil
	}
	e.Data = bytes.Clone(e.Data)
	e.Args = append([]string(nil), e.Args...)
	r.events = append(r.events, e)
	return nil
}

// Recorded returns how many terminal bytes of kind k were recorded.
func (r *Recording) Recorded(k event.Kind) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dataBytes[k]
}

func (r *Recording) failLocked() {
	if !r.failed {
		r.failed = true
		close(r.done)
	}
}

// FailNow fails the recording asynchronously, as a spool write error
// does; FailNext makes the next event fail.
func (r *Recording) FailNow()  { r.locked(r.failLocked) }
func (r *Recording) FailNext() { r.locked(func() { r.failAfter = len(r.events) }) }

func (r *Recording) locked(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}

func (r *Recording) Done() <-chan struct{} { return r.done }

func (r *Recording) Close() error { return r.end("closed", "", "") }

// Closed reports whether the recording was closed or terminated.
func (r *Recording) Closed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *Recording) Terminate(by, reason string) error { return r.end("terminated", by, reason) }

func (r *Recording) end(state, by, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("recording closed twice")
	}
	r.closed = true
	r.events = append(r.events, event.Event{Kind: event.KindEnd, Offset: time.Since(r.start), Op: state, Name: by, Text: reason})
	return nil
}

// Snapshot returns a copy of the events so far.
func (r *Recording) Snapshot() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

// Terminal concatenates the recorded bytes of one kind.
func (r *Recording) Terminal(k event.Kind) string {
	var b strings.Builder
	for _, e := range r.Snapshot() {
		if e.Kind == k {
			b.Write(e.Data)
		}
	}
	return b.String()
}

// Find returns the events of kind k with op (any op when empty).
func (r *Recording) Find(k event.Kind, op string) []event.Event {
	var out []event.Event
	for _, e := range Kinds(r.Snapshot(), k) {
		if op == "" || e.Op == op {
			out = append(out, e)
		}
	}
	return out
}

// Kinds filters events by kind.
func Kinds(evs []event.Event, k event.Kind) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// WaitClosed waits for the session's final event and returns the events.
func (r *Recording) WaitClosed(t testing.TB) []event.Event {
	t.Helper()
	r.WaitFor(t, "its end", func(evs []event.Event) bool { return len(evs) > 0 && evs[len(evs)-1].Kind == event.KindEnd })
	return r.Snapshot()
}

// WaitFor polls the recording until cond holds.
func (r *Recording) WaitFor(t testing.TB, what string, cond func([]event.Event) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(r.Snapshot()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("recording never showed %s", what)
		}
	}
}

// Dump renders the events for failure messages.
func (r *Recording) Dump() string { return Dump(r.Snapshot()) }

// Dump renders events for failure messages.
func Dump(evs []event.Event) string {
	var b strings.Builder
	for _, e := range evs {
		d := e.Data
		if len(d) > 60 {
			d = d[:60]
		}
		fmt.Fprintf(&b, "%-12s ch=%d op=%q name=%q text=%.80q args=%q n=%d denied=%v data=%q\n", e.Kind, e.Channel, e.Op, e.Name, e.Text, e.Args, e.N, e.Denied, d)
	}
	return b.String()
}

// WaitNoSessions waits until c tracks no session.
func WaitNoSessions(t testing.TB, c *lifecycle.Core) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(c.Sessions()) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions still live: %+v", c.Sessions())
		}
	}
}

// Entry is an audit record as tests read it.
type Entry struct {
	Actor, Action, Target, Outcome, Reason string
	Details                                map[string]any
}

// Audit collects audit records.
type Audit struct {
	mu      sync.Mutex
	entries []Entry
}

func (a *Audit) Append(_ context.Context, e audit.Entry) (broker.AuditRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, _ := e.Details.(map[string]any)
	a.entries = append(a.entries, Entry{Actor: e.Actor, Action: e.Action, Target: e.Target, Outcome: e.Outcome, Reason: e.Reason, Details: d})
	return broker.AuditRecord{Actor: e.Actor, Action: e.Action}, nil
}

// All returns every record so far.
func (a *Audit) All() []Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Entry(nil), a.entries...)
}

// Find returns the records with action and, when given, outcome.
func (a *Audit) Find(action string, outcome ...string) []Entry {
	var out []Entry
	for _, e := range a.All() {
		if e.Action == action && (len(outcome) == 0 || e.Outcome == outcome[0]) {
			out = append(out, e)
		}
	}
	return out
}

// Wait polls until n records with action and outcome exist and returns
// them; the proxies audit a session's end after closing its recording.
func (a *Audit) Wait(t testing.TB, action, outcome string, n int) []Entry {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := a.Find(action, outcome)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}
