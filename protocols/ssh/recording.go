package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/event"
)

// Recording is one session's recording; *recorder.Writer implements it.
// Its methods are called concurrently by the relay goroutines, must not
// wait on the network, and must copy what they keep: p and e.Data are
// reused as soon as they return. The recording stamps offsets.
type Recording interface {
	// Output, Stderr and Input record terminal or stream bytes of a
	// channel.
	Output(ch uint32, p []byte) error
	Stderr(ch uint32, p []byte) error
	Input(ch uint32, p []byte) error
	// Record records a structured event.
	Record(e event.Event) error
	// Done is closed when a fail-closed recording failed and the session
	// must end.
	Done() <-chan struct{}
	// Close records an ordinary end and seals the recording; Terminate
	// records an end the broker caused, by whom and why.
	Close() error
	Terminate(by, reason string) error
}

// recorder starts session recordings.
type recorder interface {
	// Start begins a recording. It returns once the recording can accept
	// events; an error refuses the session unless the target fails open.
	Start(ctx context.Context, h event.Header) (Recording, error)
}

// RecorderFunc adapts a function to the proxy's recorder, e.g. for
// *recorder.Recorder:
//
//	sshproxy.RecorderFunc(func(ctx context.Context, h event.Header) (sshproxy.Recording, error) {
//		w, err := rec.Start(ctx, h)
//		if err != nil {
//			return nil, err
//		}
//		return w, nil
//	})
type RecorderFunc func(ctx context.Context, h event.Header) (Recording, error)

// Start calls f.
func (f RecorderFunc) Start(ctx context.Context, h event.Header) (Recording, error) { return f(ctx, h) }

// ErrRecordingFailed ends a session whose recording stopped accepting
// events (fail-closed).
var ErrRecordingFailed = errors.New("recording failed")

// tap is a session's recording as the relay sees it: a failure on a
// fail-closed target ends the session (once) and stops the relay; on a
// fail-open target recording simply stops. A nil tap (a fail-open session
// whose recording never started) records nothing.
type tap struct {
	rec      Recording
	failOpen bool
	// onFail is called once when recording fails on a fail-closed target.
	onFail  atomic.Pointer[func(error)]
	failed  atomic.Bool
	stopped atomic.Bool
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
	rec, err := p.opts.Recorder.Start(ctx, h)
	if err != nil {
		if !h.Policy.FailOpen {
			return nil, fmt.Errorf("start recording: %w", err)
		}
		p.audit(ctx, AuditEntry{Actor: a.user, Action: "session.record_fail_open", Target: a.target.Name,
			Outcome: broker.OutcomeError, Reason: err.Error(), Details: map[string]any{"session": a.sessionID}})
		return nil, nil
	}
	return &tap{rec: rec, failOpen: h.Policy.FailOpen}, nil
}

// data records terminal or stream bytes of one kind.
func (t *tap) data(k event.Kind, ch uint32, p []byte) error {
	if t == nil || t.stopped.Load() {
		return nil
	}
	var err error
	switch k {
	case event.KindOutput:
		err = t.rec.Output(ch, p)
	case event.KindStderr:
		err = t.rec.Stderr(ch, p)
	default:
		err = t.rec.Input(ch, p)
	}
	return t.check(err)
}

// record records one event.
func (t *tap) record(e event.Event) error {
	if t == nil || t.stopped.Load() {
		return nil
	}
	return t.check(t.rec.Record(e))
}

// check turns a recording error into the session's end (fail-closed) or
// the end of recording (fail-open).
func (t *tap) check(err error) error {
	if err == nil {
		return nil
	}
	if t.failOpen {
		t.stopped.Store(true)
		return nil
	}
	if !t.failed.Swap(true) {
		if f := t.onFail.Load(); f != nil {
			(*f)(err)
		}
	}
	return fmt.Errorf("%w: %w", ErrRecordingFailed, err)
}

// setOnFail installs the session's reaction to a failure and watches the
// recording's Done channel until ctx ends.
func (t *tap) setOnFail(ctx context.Context, f func(error)) {
	if t == nil {
		return
	}
	t.onFail.Store(&f)
	go func() {
		select {
		case <-t.rec.Done():
			_ = t.check(ErrRecordingFailed)
		case <-ctx.Done():
		}
	}()
}

// end records the session's end and seals the recording.
func (t *tap) end(c endCause) error {
	if t == nil {
		return nil
	}
	if c.state == "closed" {
		return t.rec.Close()
	}
	return t.rec.Terminate(c.by, c.reason)
}
