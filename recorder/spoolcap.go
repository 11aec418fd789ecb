package recorder

import (
	"errors"
	"fmt"
)

// ErrSpoolFull: the spool holds Config.SpoolMaxBytes of chunks. The
// first event that does not fit fails every live recording, so every
// fail-closed session ends; new fail-closed sessions are refused while
// less than an eighth of the cap is free.
var ErrSpoolFull = errors.New("recording spool full")

// The spool's use is accounted in memory, not measured on disk: every
// event is reserved (by its encoded size) before the writer accepts it,
// that is before the proxy relays it, so an event that does not fit is
// refused and never delivered. A closed chunk's reservation becomes its
// sealed size once sealed; a session's chunks are released when its
// stored recording removes them from the spool (or when a chunk is
// dropped). Chunks stay in the spool until their session is stored, so a
// live session's uploaded chunks count too: the cap bounds the disk.

// reserveSpool accounts n bytes more in the spool. It fails, reserving
// nothing, when the cap would be exceeded.
func (r *Recorder) reserveSpool(n int64) bool {
	max := r.cfg.SpoolMaxBytes
	if max <= 0 || n <= 0 {
		r.spoolUsed.Add(n)
		return true
	}
	if r.spoolUsed.Add(n) > max {
		r.spoolUsed.Add(-n)
		return false
	}
	return true
}

// forceSpool accounts n bytes (negative to release) regardless of the
// cap: a session's start and end events always fit, so a recording ended
// by a full spool still closes with its end event.
func (r *Recorder) forceSpool(n int64) { r.spoolUsed.Add(n) }

// spoolReady is nil, or an error wrapping ErrSpoolFull when less than an
// eighth of the cap is free: the rest is kept for running sessions.
func (r *Recorder) spoolReady() error {
	max := r.cfg.SpoolMaxBytes
	if max <= 0 {
		return nil
	}
	if used := r.spoolUsed.Load(); used > max-max/8 {
		return fmt.Errorf("recorder: %w: %d of %d bytes used", ErrSpoolFull, used, max)
	}
	return nil
}

// spoolFull fails every live recording once an event found the spool
// full: fail-closed sessions end at once, also those that were quiet, and
// fail-open ones go on with what no longer fits dropped.
func (r *Recorder) spoolFull(cause error) {
	r.mu.Lock()
	ws := make([]*Writer, 0, len(r.live))
	for _, w := range r.live {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	for _, w := range ws {
		w.fail(cause)
	}
}

// SpoolBytes is what the spool holds or is about to: chunks of sessions
// not yet stored, and events not yet written to it.
func (r *Recorder) SpoolBytes() int64 { return r.spoolUsed.Load() }

// spoolFullError is a writer's failure when an event does not fit.
func (w *Writer) spoolFullError() error {
	return fmt.Errorf("%w: %w (recording.spool_max_bytes %d)", ErrRecordingFailed, ErrSpoolFull, w.r.cfg.SpoolMaxBytes)
}

// FailureReason says, in a few words fit for the user and the audit log,
// why the recording failed: "spool full", "object store unreachable", or
// "" for any other failure (or none).
func (w *Writer) FailureReason() string {
	err := w.Err()
	switch {
	case errors.Is(err, ErrSpoolFull):
		return "spool full"
	case errors.Is(err, ErrStoreUnavailable):
		return "object store unreachable"
	default:
		return ""
	}
}

// chunkBytes is the spool space a track's chunks take.
func (t *track) chunkBytes() int64 {
	var n int64
	for _, c := range t.chunks {
		n += c.Size
	}
	return n
}
