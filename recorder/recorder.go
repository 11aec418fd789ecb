package recorder

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/spool"
)

// Errors a Recorder and its Writers return; match them with errors.Is.
var (
	// ErrRecordingFailed: the session can no longer be recorded (spool
	// unwritable, or the store unreachable past the allowed outage). A
	// fail-closed session must end.
	ErrRecordingFailed = errors.New("recording failed")
	// ErrStoreUnavailable: the object store has been unreachable longer
	// than MaxUploadOutage; new fail-closed sessions are refused.
	ErrStoreUnavailable = errors.New("recording store unavailable")
	// ErrClosed: the writer or recorder is closed.
	ErrClosed = errors.New("recorder closed")
	// ErrNotFound: no recording for that session.
	ErrNotFound = errors.New("recording not found")
)

// Recorder records sessions. It is safe for concurrent use.
type Recorder struct {
	cfg     Config
	log     *slog.Logger
	spool   *spool.Dir
	trusted []ed25519.PublicKey

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Chunk buffers: plaintext being filled, and sealed chunks. A full
	// one has room past ChunkSize for the largest relay read the SSH proxy
	// records as one event (256 KiB), so closing a chunk never regrows it.
	chunks   chunkBufs
	sealBufs *bufPool

	mu      sync.Mutex
	closed  bool
	live    map[string]*Writer
	tracks  map[string]*track
	jobs    []job
	jobWake chan struct{}
	idle    chan struct{} // closed and replaced whenever work drains
	active  int           // jobs being worked on
	outage  time.Time     // first failure since the last successful store call
	down    bool          // outage exceeded MaxUploadOutage
	lastErr error
	// storeErrors counts failed store calls, for Backlog.
	storeErrors atomic.Uint64
	// spoolUsed is the spool's accounted use in bytes (spoolcap.go).
	spoolUsed atomic.Int64
}

// New opens the spool, checks the store, and starts the background
// uploaders. Sessions a previous process left in the spool are recovered:
// their missing chunks are uploaded and, if they were not closed, they are
// closed as interrupted. Close the Recorder to release the spool.
func New(ctx context.Context, cfg Config) (*Recorder, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.Store.Check(ctx); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	sp, err := spool.Open(cfg.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		cfg: cfg, log: cfg.Logger.With("component", "recorder"), spool: sp,
		trusted: append([]ed25519.PublicKey{cfg.Signer.Public()}, cfg.TrustedKeys...),
		ctx:     rctx, cancel: cancel,
		live: map[string]*Writer{}, tracks: map[string]*track{},
		jobWake: make(chan struct{}, 1), idle: make(chan struct{}),
		chunks:   newChunkBufs(cfg.ChunkSize + cfg.ChunkSize/4),
		sealBufs: newBufPool(chunk.MaxSealedLen(cfg.ChunkSize + cfg.ChunkSize/4)),
	}
	if err := r.recover(ctx); err != nil {
		cancel()
		sp.Close()
		return nil, err
	}
	for range cfg.Uploaders {
		r.wg.Add(1)
		go r.worker()
	}
	r.wg.Add(1)
	go r.indexLoop()
	return r, nil
}

// Close ends the sessions still being recorded (terminated by "broker",
// their data spooled), stops the background work and releases the spool.
// Uploads not finished stay in the spool and are completed by the next
// Recorder; call Drain first to finish them now.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	live := make([]*Writer, 0, len(r.live))
	for _, w := range r.live {
		live = append(live, w)
	}
	r.mu.Unlock()
	for _, w := range live {
		if err := w.Terminate("broker", "broker shutting down"); err != nil && !errors.Is(err, ErrClosed) {
			r.log.Warn("recorder: end session at shutdown", "session", w.header.SessionID, "err", err)
		}
	}
	r.cancel()
	r.wg.Wait()
	return r.spool.Close()
}

// Drain waits until every closed session has been uploaded and finalized
// (manifest stored, audited, indexed), or ctx ends.
func (r *Recorder) Drain(ctx context.Context) error {
	for {
		r.mu.Lock()
		busy := len(r.jobs) > 0 || r.active > 0 || r.pendingFinal()
		idle := r.idle
		r.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("recorder: drain: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pendingFinal reports a closed session not yet finalized. Callers hold mu.
func (r *Recorder) pendingFinal() bool {
	for _, t := range r.tracks {
		if t.end != nil {
			return true
		}
	}
	return false
}

// Ready reports whether new fail-closed sessions may start: nil, or an
// error wrapping ErrStoreUnavailable or ErrSpoolFull.
func (r *Recorder) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.down {
		return fmt.Errorf("recorder: %w: unreachable for over %s: %v", ErrStoreUnavailable, r.cfg.MaxUploadOutage, r.lastErr)
	}
	return r.spoolReady()
}

// Live returns the writer of a session being recorded by this process.
func (r *Recorder) Live(sessionID string) (*Writer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.live[sessionID]
	return w, ok
}

// sessionPrefix returns the object key prefix of a session:
// <prefix>sessions/<yyyy>/<mm>/<dd>/<session-id>/.
func (r *Recorder) sessionPrefix(id string, started time.Time) string {
	return r.cfg.Prefix + path.Join("sessions", started.UTC().Format("2006/01/02"), id) + "/"
}

// manifestName is the object name of the manifest within a session prefix.
const manifestName = "manifest.json"

// audit appends an entry when an Auditor is configured.
func (r *Recorder) audit(ctx context.Context, e audit.Entry) error {
	if r.cfg.Audit == nil {
		return nil
	}
	_, err := r.cfg.Audit.Append(ctx, e)
	return err
}
