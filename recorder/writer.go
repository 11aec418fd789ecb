package recorder

import (
	"context"
	"crypto/cipher"
	"fmt"
	"sync"
	"time"

	"github.com/custos-pam/custos/recorder/event"
)

// Writer records one session. Its methods are safe for concurrent use by
// the proxy's relay goroutines and never wait on the network or the disk:
// an event is encoded into an in-memory buffer, closed as a chunk at 4 MiB
// or 1 s, whichever comes first. In the background one goroutine seals
// closed chunks (compression, encryption, chain hash) while another writes
// the sealed ones to the spool, syncing each batch once. A method waits
// only when inFlight closed chunks are not yet durable: that bounds a
// session's memory to about inFlight+1 chunks (~12 MiB of events, each
// held as plaintext or sealed, not both). Buffers are recycled through the
// Recorder's pools.
//
// When recording fails (spool unwritable, or the store unreachable past
// the allowed outage), Err returns the cause; for a fail-closed session
// Done is closed and every method returns an error wrapping
// ErrRecordingFailed, so the proxy must end the session. A fail-open
// session keeps running and the failure is audited.
type Writer struct {
	r         *Recorder
	t         *track
	header    event.Header
	start     time.Time // monotonic origin of offsets
	aead      cipher.AEAD
	failOpen  bool
	chunkSize int
	interval  time.Duration
	inFlight  int // closed chunks not yet durable before appends wait

	kick       chan struct{} // wakes the sealer
	toSpool    chan sealed   // sealed chunks, to the spool writer
	sealerDone chan struct{} // closed once both have finished
	done       chan struct{} // closed when a fail-closed recording fails

	mu       sync.Mutex
	cur      []byte // events of the open chunk
	curN     uint32
	curFirst time.Duration
	curLast  time.Duration
	curAt    time.Time // when the open chunk got its first event
	full     []pending // closed chunks waiting for the sealer
	handed   uint64    // chunks handed to the sealer
	spooled  uint64    // chunks finished: durable in the spool, or dropped
	progress chan struct{}
	last     time.Duration
	ix       *indexer
	closing  bool
	err      error
	lost     bool  // some events could not be spooled
	dropped  int64 // events lost that way
	// epoch counts chain rewinds: after a failed spool write, chunks
	// sealed onto the lost one are dropped, and the sealer continues the
	// chain from rewind (the last durable chunk).
	epoch  uint64
	rewind *chainLink
	// live is what watchers of the running session see (live.go).
	live liveFeed

	// Owned by the sealer goroutine.
	seq  uint64
	prev [32]byte
}

// chainLink is a point in the chunk chain: a sequence number and the hash
// of that chunk (the header hash for 0).
type chainLink struct {
	seq  uint64
	hash [32]byte
}

// pending is a closed chunk's plaintext waiting to be sealed.
type pending struct {
	b           []byte
	n           uint32
	first, last time.Duration
}

// maxInFlight bounds the closed chunks not yet durable in the spool
// (waiting to be sealed, sealed, or being written) before appends wait;
// inFlightBytes bounds their events, so large chunks are fewer (never
// fewer than 2, so one is sealed while another is written).
const (
	maxInFlight   = 8
	inFlightBytes = 8 << 20
)

// inFlightChunks is how many closed chunks of chunkSize bytes may be
// pending.
func inFlightChunks(chunkSize int) int {
	return min(maxInFlight, max(2, inFlightBytes/chunkSize))
}

// SessionID returns the recorded session's id.
func (w *Writer) SessionID() string { return w.header.SessionID }

// Header returns the session header as recorded.
func (w *Writer) Header() event.Header { return w.header }

// Done is closed when the session must end because a fail-closed
// recording failed. It is never closed for a fail-open session.
func (w *Writer) Done() <-chan struct{} { return w.done }

// Err returns why recording failed, or nil.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Stats returns the relayed bytes and statements recorded so far.
func (w *Writer) Stats() (bytes, statements int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ix.bytes, w.ix.statements
}

// Output records bytes the target sent on a channel (stdout).
func (w *Writer) Output(ch uint32, p []byte) error { return w.data(event.KindOutput, ch, p) }

// Stderr records extended data (stderr) the target sent on a channel.
func (w *Writer) Stderr(ch uint32, p []byte) error { return w.data(event.KindStderr, ch, p) }

// Input records bytes the client sent on a channel.
func (w *Writer) Input(ch uint32, p []byte) error { return w.data(event.KindInput, ch, p) }

// Resize records a terminal window size.
func (w *Writer) Resize(ch uint32, cols, rows uint32) error {
	return w.Record(event.Event{Kind: event.KindResize, Channel: ch, Cols: cols, Rows: rows})
}

// Query records a PostgreSQL simple-protocol query.
func (w *Writer) Query(sql string) error {
	return w.Record(event.Event{Kind: event.KindPGQuery, Text: sql})
}

// Note records a broker annotation (topic, message).
func (w *Writer) Note(topic, text string) error {
	return w.Record(event.Event{Kind: event.KindNote, Op: topic, Text: text})
}

// Record records any event; the writer sets its Offset. See event.Event
// for the fields each kind uses. Terminal data longer than
// event.MaxFieldLen is split into several events.
func (w *Writer) Record(e event.Event) error {
	if e.Kind.Terminal() {
		return w.data(e.Kind, e.Channel, e.Data)
	}
	w.mu.Lock()
	if err := w.writable(); err != nil {
		w.mu.Unlock()
		return err
	}
	e.Offset = w.offset()
	w.cur = w.r.chunks.room(w.cur, eventRoom(&e))
	buf := event.Append(w.cur, &e)
	if !w.reserve(buf) {
		return w.refuse()
	}
	w.ix.observe(&e)
	w.appended(buf, e.Offset)
	w.live.record(e)
	w.mu.Unlock()
	return nil
}

func (w *Writer) data(k event.Kind, ch uint32, p []byte) error {
	if len(p) == 0 {
		return w.Err()
	}
	for {
		n := min(len(p), event.MaxFieldLen)
		w.mu.Lock()
		if err := w.writable(); err != nil {
			w.mu.Unlock()
			return err
		}
		off := w.offset()
		w.cur = w.r.chunks.room(w.cur, dataOverhead+n)
		buf := event.AppendData(w.cur, k, off, ch, p[:n])
		if !w.reserve(buf) {
			return w.refuse()
		}
		w.ix.data(k, ch, p[:n])
		w.appended(buf, off)
		w.live.data(&w.header, k, ch, p[:n], off)
		w.mu.Unlock()
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// dataOverhead bounds what a data event's encoding adds to its bytes.
const dataOverhead = 32

// eventRoom estimates e's encoded length, for sizing the chunk buffer.
func eventRoom(e *event.Event) int {
	n := 64 + len(e.Data) + len(e.Op) + len(e.Name) + len(e.Text)
	for _, a := range e.Args {
		n += 8 + len(a)
	}
	return n
}

// reserve accounts in the spool for what buf, w.cur with one event
// appended, adds. When it does not fit, the event is undone: w.cur keeps
// what it held. Callers hold w.mu.
func (w *Writer) reserve(buf []byte) bool {
	if w.r.reserveSpool(int64(len(buf) - len(w.cur))) {
		return true
	}
	w.cur = buf[:len(w.cur)]
	return false
}

// refuse answers an event the spool had no room for, and unlocks w.mu.
// The full spool fails every live recording (Recorder.spoolFull). For a
// fail-closed session the event is refused, so the proxy relays nothing
// more, and the session ends; a fail-open one drops the event (the
// recording ends as incomplete) and goes on.
func (w *Writer) refuse() error {
	if w.failOpen {
		w.lost = true
		w.dropped++
	}
	w.mu.Unlock()
	cause := w.spoolFullError()
	w.r.spoolFull(cause)
	if w.failOpen {
		return nil
	}
	if err := w.Err(); err != nil {
		return err // the first failure, which may be another
	}
	return cause
}

// writable waits while the disk is behind (inFlight chunks not yet
// durable) and reports whether events may be appended. Callers hold w.mu.
func (w *Writer) writable() error {
	for {
		if w.closing {
			return fmt.Errorf("recorder: session %s: %w", w.header.SessionID, ErrClosed)
		}
		if w.err != nil && !w.failOpen {
			return w.err
		}
		if w.handed-w.spooled < uint64(w.inFlight) {
			return nil
		}
		ch := w.progress
		w.mu.Unlock()
		<-ch
		w.mu.Lock()
	}
}

// offset returns the current offset, never less than the last one.
// Callers hold w.mu.
func (w *Writer) offset() time.Duration {
	off := time.Since(w.start)
	if off < w.last {
		off = w.last
	}
	w.last = off
	return off
}

// appended installs the grown buffer and closes the chunk when it is full.
// Callers hold w.mu.
func (w *Writer) appended(buf []byte, off time.Duration) {
	w.cur = buf
	if w.curN == 0 {
		w.curFirst = off
		w.curAt = time.Now()
		w.wake()
	}
	w.curN++
	w.curLast = off
	if len(w.cur) >= w.chunkSize {
		w.handOff()
		w.wake()
	}
}

// handOff moves the open chunk to the sealer's queue. Callers hold w.mu.
func (w *Writer) handOff() {
	if w.curN == 0 {
		return
	}
	w.full = append(w.full, pending{b: w.cur, n: w.curN, first: w.curFirst, last: w.curLast})
	w.handed++
	w.cur = nil // the next event takes a buffer: an idle session holds none
	w.curN = 0
}

func (w *Writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Flush seals the open chunk and waits until everything recorded so far is
// fsynced in the spool.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	w.handOff()
	target := w.handed
	w.wake()
	for w.spooled < target {
		if w.err != nil && !w.failOpen {
			break
		}
		ch := w.progress
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("recorder: flush: %w", ctx.Err())
		}
		w.mu.Lock()
	}
	err := w.err
	w.mu.Unlock()
	if err != nil && !w.failOpen {
		return err
	}
	return nil
}

// Close records the end of the session, seals and spools what remains and
// hands the session to the background uploader, which writes the manifest
// once every chunk is stored. It returns once the data is durable locally.
func (w *Writer) Close() error { return w.end(stateClosed, "", "") }

// Terminate is Close for a session the broker ended: by names who (a user,
// or "broker" for an expired grant) and reason says why.
func (w *Writer) Terminate(by, reason string) error { return w.end(stateTerminated, by, reason) }

// Manifest states, as recorded in end events and manifests.
const (
	stateClosed      = "closed"
	stateTerminated  = "terminated"
	stateInterrupted = "interrupted"
)

func (w *Writer) end(state, by, reason string) error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return fmt.Errorf("recorder: session %s: %w", w.header.SessionID, ErrClosed)
	}
	if w.err != nil && !w.failOpen {
		// The failed recording ended the session: nobody closed it.
		state = stateInterrupted
	}
	e := event.Event{Kind: event.KindEnd, Op: state, Name: by, Text: reason, Offset: w.offset()}
	w.ix.observe(&e)
	w.cur = w.r.chunks.room(w.cur, eventRoom(&e))
	buf := event.Append(w.cur, &e)
	w.r.forceSpool(int64(len(buf) - len(w.cur)))
	w.appended(buf, e.Offset)
	w.live.record(e)
	w.closing = true
	w.handOff()
	w.wake()
	w.mu.Unlock()
	<-w.sealerDone

	w.mu.Lock()
	err, lost := w.err, w.lost
	stats := w.ix.stats()
	w.mu.Unlock()
	info := endInfo{State: state, By: by, Reason: reason, EndedAt: w.header.StartedAt.Add(e.Offset)}
	if lost {
		// Events are missing: the recording cannot claim a clean end.
		info.State, info.By, info.Reason = stateInterrupted, "", "recording incomplete: "+err.Error()
	}
	w.r.sessionEnded(w, info, stats)
	if err != nil && !w.failOpen {
		return err
	}
	return nil
}

// fail records a recording failure. A fail-closed session's Done closes;
// a fail-open session continues and the failure is audited.
func (w *Writer) fail(cause error) {
	w.mu.Lock()
	first := w.err == nil
	if first {
		w.err = cause
		if !w.failOpen {
			close(w.done)
		}
		w.broadcast()
	}
	w.mu.Unlock()
	if first {
		// Asynchronous: fail may run on the sealer, which a fail-open
		// note written from here could wait for.
		go w.r.recordingFailed(w, cause)
	}
}

// broadcast wakes everyone waiting for sealer progress. Callers hold w.mu.
func (w *Writer) broadcast() {
	close(w.progress)
	w.progress = make(chan struct{})
}
