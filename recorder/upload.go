package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/spool"
	"github.com/custos-pam/custos/recorder/store"
)

// track is the recorder's view of one spooled session: its chunks and how
// far their upload got, and how it ended once it did.
type track struct {
	id     string
	sp     *spool.Session
	meta   sessionMeta
	chunks []chunkInfo // chunks[i].Seq == i+1
	end    *endInfo    // set when the session ended
	stats  indexStats  // final counters for the session index
	// finalizing is set while a finalize job is queued or running.
	finalizing bool
	// ixMu orders index writes; once final is set, live updates stop.
	ixMu  sync.Mutex
	final bool
}

// sessionMeta is the spool's record of a session, written before Start
// returns: everything recovery needs to close the session.
type sessionMeta struct {
	SessionID   string          `json:"session_id"`
	Header      json.RawMessage `json:"header"`
	HeaderHash  string          `json:"header_hash"`
	StartedAt   time.Time       `json:"started_at"`
	Key         keywrap.Wrapped `json:"key"`
	Prefix      string          `json:"prefix"`
	RetainUntil time.Time       `json:"retain_until"`
	LegalHold   bool            `json:"legal_hold,omitempty"`
	FailOpen    bool            `json:"fail_open,omitempty"`
	// IndexSQL is the header's Policy.IndexSQL, for the index rebuilt
	// at recovery.
	IndexSQL string `json:"index_sql,omitempty"`
}

// endInfo is how a session ended; it is spooled as end.json.
type endInfo struct {
	State   string    `json:"state"`
	By      string    `json:"by,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	EndedAt time.Time `json:"ended_at"`
}

// chunkInfo describes a spooled chunk.
type chunkInfo struct {
	Seq         uint64
	Hash, Prev  [32]byte
	Size        int64
	Events      uint32
	First, Last time.Duration
	Sealed      time.Time
	VersionID   string
	Uploaded    bool
	// Lost is set when the spooled file vanished before upload.
	Lost bool
}

// Spool file names besides chunks.
const (
	metaFile     = "session.json"
	endFile      = "end.json"
	manifestFile = "manifest.json"
	// uploadLog lists the uploaded chunks, one uploadMark per line.
	uploadLog = "uploaded"
	// uploadedExt names the manifest's upload mark (and, in spools
	// written before the upload log, each chunk's).
	uploadedExt = ".up"
)

// uploadMark records an upload: a line of the upload log, or the content
// of the manifest's mark.
type uploadMark struct {
	Seq       uint64 `json:"seq,omitempty"`
	VersionID string `json:"version_id"`
}

// filePutter is an ObjectStore that can take a spooled chunk file over
// instead of being sent its bytes (store/localdir, by hard link). PutFile
// must succeed again for the same file, as Put does for the same bytes.
type filePutter interface {
	PutFile(ctx context.Context, key, path string, opts store.PutOptions) (string, error)
}

// job is a unit of background work: upload chunk seq, or finalize the
// session when seq is 0.
type job struct {
	t         *track
	seq       uint64
	attempts  int
	notBefore time.Time
	// check looks for an earlier, unacknowledged upload before putting.
	check bool
}

// putTimeout bounds one store request.
const putTimeout = 20 * time.Second

// enqueue adds a job. Callers hold r.mu.
func (r *Recorder) enqueue(j job) {
	r.jobs = append(r.jobs, j)
	select {
	case r.jobWake <- struct{}{}:
	default:
	}
}

// retry re-queues a failed job with exponential backoff (up to 5s).
func (r *Recorder) retry(j job) {
	j.attempts++
	j.check = true
	d := 100 * time.Millisecond << min(j.attempts, 6)
	j.notBefore = time.Now().Add(min(d, 5*time.Second))
	r.mu.Lock()
	r.enqueue(j)
	r.mu.Unlock()
}

func (r *Recorder) worker() {
	defer r.wg.Done()
	for {
		j, ok := r.nextJob()
		if !ok {
			return
		}
		if j.seq > 0 {
			r.uploadChunk(j)
		} else {
			r.finalize(j)
		}
		r.mu.Lock()
		r.active--
		if r.active == 0 && len(r.jobs) == 0 {
			close(r.idle)
			r.idle = make(chan struct{})
		}
		r.mu.Unlock()
	}
}

// takeJob removes job i from the queue. Callers hold r.mu. The first job,
// the usual one, leaves in constant time however long the queue (after
// an object store outage it holds a chunk of every busy session per
// second). No slot the queue no longer uses keeps its job: a stale copy
// would keep the job's session (its chunk list, its header) in memory
// long after the session was stored, and an emptied queue lets its array
// go.
func (r *Recorder) takeJob(i int) {
	if i == 0 {
		r.jobs[0] = job{}
		r.jobs = r.jobs[1:]
	} else {
		last := len(r.jobs) - 1
		copy(r.jobs[i:], r.jobs[i+1:])
		r.jobs[last] = job{}
		r.jobs = r.jobs[:last]
	}
	if len(r.jobs) == 0 {
		r.jobs = nil
	}
}

// nextJob blocks until a job is due or the recorder stops.
func (r *Recorder) nextJob() (job, bool) {
	for {
		r.mu.Lock()
		now := time.Now()
		wait := time.Hour
		for i, j := range r.jobs {
			if !j.notBefore.After(now) {
				r.takeJob(i)
				r.active++
				r.mu.Unlock()
				return j, true
			}
			wait = min(wait, j.notBefore.Sub(now))
		}
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return job{}, false
		case <-r.jobWake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (r *Recorder) uploadChunk(j job) {
	t := j.t
	r.mu.Lock()
	ci := t.chunks[j.seq-1]
	r.mu.Unlock()
	key := t.meta.Prefix + chunk.ObjectName(j.seq)
	var vid string
	var err error
	if fp, ok := r.cfg.Store.(filePutter); ok {
		vid, err = r.putFile(fp, t, j.seq, key, ci.Hash)
	} else {
		var body []byte
		body, err = t.sp.ReadChunk(j.seq)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Error("recorder: read spooled chunk", "session", t.id, "seq", j.seq, "err", err)
			r.retry(j)
			return
		}
		if err == nil {
			vid, err = r.put(key, body, ci.Hash, t.meta, j.check)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		r.log.Error("recorder: spooled chunk vanished before upload; the recording ends before it",
			"session", t.id, "seq", j.seq)
		r.mu.Lock()
		t.chunks[j.seq-1].Lost = true
		r.maybeFinalize(t)
		r.mu.Unlock()
		return
	}
	if err != nil {
		if r.ctx.Err() != nil {
			return // shutting down: the spool keeps the chunk
		}
		r.storeFailed(err)
		r.log.Warn("recorder: upload failed, will retry", "session", t.id, "seq", j.seq, "attempt", j.attempts+1, "err", err)
		r.retry(j)
		return
	}
	r.storeOK()
	mark, _ := json.Marshal(uploadMark{Seq: j.seq, VersionID: vid})
	if err := t.sp.AppendLog(uploadLog, mark); err != nil {
		// Not fatal: recovery finds the uploaded version again.
		r.log.Warn("recorder: write upload mark", "session", t.id, "seq", j.seq, "err", err)
	}
	r.mu.Lock()
	t.chunks[j.seq-1].VersionID = vid
	t.chunks[j.seq-1].Uploaded = true
	r.maybeFinalize(t)
	r.mu.Unlock()
}

// putFile hands spooled chunk seq to a store that takes files over. An
// error wraps fs.ErrNotExist only when the spooled file is gone.
func (r *Recorder) putFile(fp filePutter, t *track, seq uint64, key string, sum [32]byte) (string, error) {
	path := t.sp.ChunkPath(seq)
	ctx, cancel := context.WithTimeout(r.ctx, putTimeout)
	defer cancel()
	opts := store.PutOptions{RetainUntil: t.meta.RetainUntil, LegalHold: t.meta.LegalHold, SHA256: hex.EncodeToString(sum[:])}
	vid, err := fp.PutFile(ctx, key, path, opts)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(path); !errors.Is(serr, fs.ErrNotExist) {
			err = fmt.Errorf("recorder: put %s: %s", key, err) // not the spooled file: retry
		}
	}
	return vid, err
}

// put writes body at key under the session's retention. With check set it
// first looks for an identical version an earlier attempt may have
// written, so a retry does not stack a second version on the key.
func (r *Recorder) put(key string, body []byte, sum [32]byte, m sessionMeta, check bool) (string, error) {
	ctx, cancel := context.WithTimeout(r.ctx, putTimeout)
	defer cancel()
	if check {
		vid, found, err := r.findVersion(ctx, key, sum)
		if err != nil {
			return "", err
		}
		if found {
			return vid, nil
		}
	}
	opts := store.PutOptions{RetainUntil: m.RetainUntil, LegalHold: m.LegalHold, SHA256: hex.EncodeToString(sum[:])}
	vid, err := r.cfg.Store.Put(ctx, key, body, opts)
	if errors.Is(err, store.ErrExists) {
		// A write-once store holding other bytes: only an identical body
		// counts as ours.
		if vid, found, ferr := r.findVersion(ctx, key, sum); ferr == nil && found {
			return vid, nil
		}
	}
	return vid, err
}

// findVersion looks for a version of key whose bytes hash to sum.
func (r *Recorder) findVersion(ctx context.Context, key string, sum [32]byte) (string, bool, error) {
	vs, err := r.cfg.Store.Versions(ctx, key)
	if err != nil {
		return "", false, err
	}
	for _, v := range vs {
		if v.Key != key || v.DeleteMarker {
			continue
		}
		o, err := r.cfg.Store.Get(ctx, key, v.VersionID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", false, err
		}
		if sha256.Sum256(o.Body) == sum {
			return v.VersionID, true, nil
		}
	}
	return "", false, nil
}

// Backlog is what waits in the spool for upload, for the metrics.
type Backlog struct {
	// Chunks and Bytes are the sealed chunks not yet uploaded.
	Chunks int
	Bytes  int64
	// Oldest is when the oldest of them was sealed; zero when none waits.
	Oldest time.Time
	// StoreErrors counts failed object store calls since the recorder
	// started.
	StoreErrors uint64
}

// Backlog reports the upload backlog.
func (r *Recorder) Backlog() Backlog {
	b := Backlog{StoreErrors: r.storeErrors.Load()}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracks {
		for _, ci := range t.chunks {
			if ci.Uploaded || ci.Lost {
				continue
			}
			b.Chunks++
			b.Bytes += ci.Size
			if !ci.Sealed.IsZero() && (b.Oldest.IsZero() || ci.Sealed.Before(b.Oldest)) {
				b.Oldest = ci.Sealed
			}
		}
	}
	return b
}

// storeFailed records a failed store call; past MaxUploadOutage the store
// is declared down and fail-closed writers fail.
func (r *Recorder) storeFailed(err error) {
	r.storeErrors.Add(1)
	r.mu.Lock()
	now := time.Now()
	r.lastErr = err
	if r.outage.IsZero() {
		r.outage = now
	}
	var writers []*Writer
	if !r.down && now.Sub(r.outage) > r.cfg.MaxUploadOutage {
		r.down = true
		for _, w := range r.live {
			writers = append(writers, w)
		}
	}
	r.mu.Unlock()
	if writers != nil {
		r.log.Error("recorder: object store unreachable past the allowed outage", "outage", r.cfg.MaxUploadOutage, "err", err)
		cause := fmt.Errorf("%w: %w: unreachable for over %s", ErrRecordingFailed, ErrStoreUnavailable, r.cfg.MaxUploadOutage)
		for _, w := range writers {
			w.fail(cause)
		}
	}
}

// storeOK records a successful store call.
func (r *Recorder) storeOK() {
	r.mu.Lock()
	wasDown := r.down
	r.outage, r.down, r.lastErr = time.Time{}, false, nil
	r.mu.Unlock()
	if wasDown {
		r.log.Info("recorder: object store reachable again")
	}
}

// maybeFinalize queues the finalize job once an ended session's chunks are
// all uploaded. Callers hold r.mu.
func (r *Recorder) maybeFinalize(t *track) {
	if t.end == nil || t.finalizing {
		return
	}
	for _, c := range t.chunks {
		if !c.Uploaded && !c.Lost {
			return
		}
	}
	t.finalizing = true
	r.enqueue(job{t: t})
}

// hexHash decodes a hex SHA-256.
func hexHash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("bad hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}
