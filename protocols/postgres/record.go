package pgproxy

import (
	"context"
	"sync/atomic"

	"github.com/custos-pam/custos/recorder/event"
)

// recordingStarter starts session recordings; the recorder package's Recorder,
// behind a one-line adapter, implements it.
type recordingStarter interface {
	// Start begins the recording of one session and makes it durable
	// before returning. An error refuses the session (fail closed) before
	// any client byte is relayed.
	Start(ctx context.Context, h event.Header) (Recording, error)
}

// Recording is one session's recording; *recorder.Writer implements it.
// Its methods are called from both relay goroutines at once. Record must
// not wait on the network: the recorder buffers events and seals them into
// chunks in the background, so the relay is never held up by the store.
type Recording interface {
	// Record appends an event; the recording stamps its offset. An error
	// means the session can no longer be recorded and must end.
	Record(e event.Event) error
	// Done is closed when a fail-closed recording failed.
	Done() <-chan struct{}
	// Close ends the recording of a session that closed normally.
	Close() error
	// Terminate ends the recording of a session the broker ended: by says
	// who, reason why.
	Terminate(by, reason string) error
}

// sessionRecorder is the relay's handle on a session's recording: it
// counts events and turns a recorder failure into the client-visible
// error that ends the session.
type sessionRecorder struct {
	rec    Recording
	events atomic.Int64
}

// errRecordingFailed is what the client sees when the recording fails.
func errRecordingFailed(err error) error {
	return &clientError{Code: codeAdminShutdown, Msg: "custos: session recording failed; session ended (fail-closed)", err: err}
}

// record appends one event.
func (r *sessionRecorder) record(e event.Event) error {
	if err := r.rec.Record(e); err != nil {
		return errRecordingFailed(err)
	}
	r.events.Add(1)
	return nil
}

// nopRecording stands in when recording failed to start on a fail-open
// target.
type nopRecording struct{}

func (nopRecording) Record(event.Event) error    { return nil }
func (nopRecording) Done() <-chan struct{}       { return nil }
func (nopRecording) Close() error                { return nil }
func (nopRecording) Terminate(_, _ string) error { return nil }
