package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/event"
)

// ErrRecordingFailed ends a session whose recording stopped accepting
// events (fail-closed).
var ErrRecordingFailed = errors.New("recording failed")

// tap is a session's recording as the relay sees it: it stamps offsets in
// order, serializes the copiers, turns a failure into the session's end
// (or, for a fail-open target, into a note and no further recording), and
// is a no-op when nil.
type tap struct {
	mu       sync.Mutex
	rec      recording
	start    time.Time
	failOpen bool
	// onFail is called once, outside the lock, when recording fails on a
	// fail-closed target.
	onFail func(error)
	failed bool
	ev     event.Event
}

// startRecording starts the session's recording with its header. A
// fail-open target continues unrecorded when the recorder refuses; that is
// audited.
func (p *Proxy) startRecording(ctx context.Context, a *admission, client string) (*tap, error) {
	h := event.Header{
		SessionID:  a.sessionID,
		GrantID:    a.grant.ID,
		User:       a.user,
		Target:     a.target.Name,
		Role:       a.role.Name,
		Protocol:   "ssh",
		ClientAddr: client,
		Account:    a.login,
		StartedAt:  p.opts.Now().UTC(),
		Policy: event.Policy{
			Approvers:   a.grant.Approvers,
			Reason:      a.grant.Reason,
			Ticket:      a.grant.Ticket,
			GrantEndsAt: a.grant.EndsAt,
			Retention:   a.target.Recording.Retention.D(),
			FailOpen:    a.target.Recording.FailOpen,
		},
	}
	t := &tap{start: time.Now(), failOpen: a.target.Recording.FailOpen}
	rec, err := p.opts.Recorder.Start(ctx, h)
	if err != nil {
		if !t.failOpen {
			return nil, fmt.Errorf("start recording: %w", err)
		}
		p.audit(ctx, AuditEntry{Actor: a.user, Action: "session.record_fail_open", Target: a.target.Name,
			Outcome: broker.OutcomeError, Reason: err.Error(), Details: map[string]any{"session": a.sessionID}})
		return t, nil
	}
	t.rec = rec
	return t, nil
}

// data records terminal or stream bytes. p may be any length; it is split
// into events of at most event.MaxFieldLen bytes.
func (t *tap) data(k event.Kind, ch uint32, p []byte) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.rec == nil {
		t.mu.Unlock()
		return nil
	}
	var err error
	for len(p) > 0 && err == nil {
		n := min(len(p), event.MaxFieldLen)
		t.ev = event.Event{Kind: k, Offset: time.Since(t.start), Channel: ch, Data: p[:n]}
		err = t.rec.Record(&t.ev)
		p = p[n:]
	}
	t.ev.Data = nil
	return t.afterRecord(err)
}

// record records one event.
func (t *tap) record(e event.Event) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.rec == nil {
		t.mu.Unlock()
		return nil
	}
	e.Offset = time.Since(t.start)
	t.ev = e
	err := t.rec.Record(&t.ev)
	return t.afterRecord(err)
}

// afterRecord releases the lock taken by data or record and handles a
// failure.
func (t *tap) afterRecord(err error) error {
	if err == nil {
		t.mu.Unlock()
		return nil
	}
	first := !t.failed
	t.failed = true
	if t.failOpen {
		// Keep the session; say so in the recording if it still listens,
		// then stop recording.
		_ = t.rec.Record(&event.Event{Kind: event.KindNote, Offset: time.Since(t.start), Op: "fail_open", Text: err.Error()})
		t.rec = nil
		t.mu.Unlock()
		return nil
	}
	onFail := t.onFail
	t.mu.Unlock()
	if first && onFail != nil {
		onFail(err)
	}
	return fmt.Errorf("%w: %v", ErrRecordingFailed, err)
}

func (t *tap) setOnFail(f func(error)) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.onFail = f
	t.mu.Unlock()
}

// end writes the final event and closes the recording.
func (t *tap) end(c endCause, timeout time.Duration) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	rec := t.rec
	t.rec = nil
	var err error
	if rec != nil && !t.failed {
		err = rec.Record(&event.Event{Kind: event.KindEnd, Offset: time.Since(t.start), Op: c.state, Name: c.by, Text: c.reason, N: int64(c.exit)})
	}
	t.mu.Unlock()
	if rec == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if cerr := rec.Close(ctx); err == nil {
		err = cerr
	}
	return err
}
