package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/event"
)

// Recording is one session's recording; *recorder.Writer implements it.
// Its methods are called concurrently by the relay goroutines, must not
// wait on the network, and must copy what they keep: p and e.Data are
// reused as soon as they return. The recording stamps offsets.
//
// The recording decides what a failure means: a fail-closed recording
// returns errors and closes Done, and the session ends; a fail-open one
// audits the failure and keeps accepting events.
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

// Recorder starts session recordings.
type Recorder interface {
	// Start begins a recording and returns once it can accept events.
	Start(ctx context.Context, h event.Header) (Recording, error)
}

// RecorderFunc adapts a function to a Recorder; cmd/custos/app adapts
// (*recorder.Recorder).Start with it.
type RecorderFunc func(ctx context.Context, h event.Header) (Recording, error)

// Start calls f.
func (f RecorderFunc) Start(ctx context.Context, h event.Header) (Recording, error) { return f(ctx, h) }

// ErrRecordingFailed wraps a recording error that ended the session.
var ErrRecordingFailed = errors.New("recording failed")

// ErrRecordingUnavailable refuses a session on a fail-closed target whose
// recording could not start.
var ErrRecordingUnavailable = errors.New("recording unavailable")

// Header is the recording header of the session: who, where, as whom and
// the policy snapshot (approvers, justification, retention, fail-open and
// the target's PostgreSQL recording settings).
func (s *Session) Header() event.Header {
	g, t := s.Grant, s.Target
	h := event.Header{
		SessionID: s.ID, GrantID: g.ID, User: g.User, Target: g.Target, Role: g.Role,
		Protocol: s.c.cfg.Protocol, ClientAddr: s.ClientAddr, Account: s.Account, Database: s.Database,
		StartedAt: s.StartedAt,
		Policy: event.Policy{
			Approvers: g.Approvers, Reason: g.Reason, Ticket: g.Ticket, GrantEndsAt: g.EffectiveEnd(),
			Retention: t.Recording.Retention.D(), FailOpen: t.Recording.FailOpen,
		},
	}
	if t.Kind == "ssh" {
		h.Policy.FileContents = t.Recording.FileContents
	}
	if t.Kind == "postgres" {
		h.Policy.Parameters = t.Postgres.Parameters
		if h.Policy.Parameters == "" {
			h.Policy.Parameters = "record"
		}
		h.Policy.RecordResults = t.Postgres.RecordResults
		h.Policy.IndexSQL = t.Recording.IndexSQL
		if h.Policy.IndexSQL == "" {
			h.Policy.IndexSQL = event.IndexSQLNormalized
		}
	}
	return h
}

// StartRecording starts the session's recording. When the recorder
// refuses, a fail-closed target's session is refused (an error wrapping
// ErrRecordingUnavailable) and a fail-open target's runs unrecorded, which
// is audited as session.record_fail_open.
func (s *Session) StartRecording(ctx context.Context) error {
	rec, err := s.c.cfg.Recorder.Start(ctx, s.Header())
	if err == nil {
		s.rec = rec
		return nil
	}
	if !s.Target.Recording.FailOpen {
		return fmt.Errorf("%w: %w", ErrRecordingUnavailable, err)
	}
	s.c.log.Error("recording failed to start; continuing (fail-open target)", "session", s.ID, "err", err)
	s.Audit(ActionFailOpen, broker.OutcomeError, err.Error(), map[string]any{})
	return nil
}

// Record records one event. An error ends the session (RecordingFailed)
// and wraps ErrRecordingFailed: nothing more may be relayed.
func (s *Session) Record(e event.Event) error { return s.check(s.rec.Record(e)) }

// Data records terminal or stream bytes of one kind on a channel.
func (s *Session) Data(k event.Kind, ch uint32, p []byte) error {
	var err error
	switch k {
	case event.KindOutput:
		err = s.rec.Output(ch, p)
	case event.KindStderr:
		err = s.rec.Stderr(ch, p)
	default:
		err = s.rec.Input(ch, p)
	}
	return s.check(err)
}

func (s *Session) check(err error) error {
	if err == nil {
		s.events.Add(1)
		return nil
	}
	s.recordingFailed()
	return fmt.Errorf("%w: %w", ErrRecordingFailed, err)
}

// failureReasoner is a recording that says why it failed, in a few words
// fit for the user and the audit log ("spool full"), or "" when it has no
// more to say; *recorder.Writer implements it.
type failureReasoner interface{ FailureReason() string }

// recordingFailed ends the session once its recording failed. The reason,
// shown to the user and recorded as the end reason, is "recording failed"
// and what the recording says of why.
func (s *Session) recordingFailed() {
	if s.failed.Swap(true) {
		return
	}
	reason := "recording failed"
	if fr, ok := s.rec.(failureReasoner); ok {
		if why := fr.FailureReason(); why != "" {
			reason += ": " + why
		}
	}
	s.c.log.Error("recording failed; ending session", "session", s.ID, "reason", reason)
	s.terminate(&Cause{Kind: RecordingFailed, By: "system", Reason: reason})
}

// nopRecording stands in before the recording starts and for a fail-open
// target whose recording could not start.
type nopRecording struct{}

func (nopRecording) Output(uint32, []byte) error { return nil }
func (nopRecording) Stderr(uint32, []byte) error { return nil }
func (nopRecording) Input(uint32, []byte) error  { return nil }
func (nopRecording) Record(event.Event) error    { return nil }
func (nopRecording) Done() <-chan struct{}       { return nil }
func (nopRecording) Close() error                { return nil }
func (nopRecording) Terminate(_, _ string) error { return nil }
