package recorder

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/custos-pam/custos/recorder/chunk"
)

// sealed is a chunk sealed and waiting for the spool.
type sealed struct {
	b     []byte
	ci    chunkInfo
	epoch uint64
}

// sealLoop closes chunks on time, seals them in order and hands them to
// spoolLoop. It exits once the writer is closing and everything is sealed.
func (w *Writer) sealLoop() {
	defer close(w.toSpool)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-w.kick:
		case <-timer.C:
		}
		w.mu.Lock()
		if w.curN > 0 && time.Since(w.curAt) >= w.interval {
			w.handOff()
		}
		batch := w.full
		w.full = nil
		closing := w.closing
		wait := time.Hour
		if w.curN > 0 {
			wait = max(w.interval-time.Since(w.curAt), time.Millisecond)
		}
		w.mu.Unlock()

		for _, p := range batch {
			s, err := w.seal(p)
			if err != nil {
				// Failed before the chunk is acknowledged, so a Flush
				// waiting for it reports the failure.
				w.fail(fmt.Errorf("%w: seal: %w", ErrRecordingFailed, err))
			}
			// The chunk's events were reserved as plaintext; on disk
			// it takes its sealed size.
			if err == nil {
				w.r.forceSpool(s.ci.Size - int64(len(p.b)))
			} else {
				w.r.forceSpool(-int64(len(p.b)))
			}
			w.r.chunks.put(p.b)
			w.mu.Lock()
			if err != nil {
				w.lost = true
				w.dropped += int64(p.n)
				w.spooled++
				w.broadcast()
			}
			w.mu.Unlock()
			if err == nil {
				w.toSpool <- s
			}
		}
		if closing {
			w.mu.Lock()
			doneAll := len(w.full) == 0 && w.curN == 0
			w.mu.Unlock()
			if doneAll {
				return
			}
			continue
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// seal compresses, encrypts and hashes one chunk onto the chain. After a
// failed spool write the chain first rewinds to the last durable chunk.
func (w *Writer) seal(p pending) (sealed, error) {
	w.mu.Lock()
	if w.rewind != nil {
		w.seq, w.prev = w.rewind.seq, w.rewind.hash
		w.rewind = nil
	}
	epoch := w.epoch
	w.mu.Unlock()
	f := chunk.Frame{
		SessionID: w.header.SessionID, Seq: w.seq + 1, Prev: w.prev,
		Events: p.n, First: p.first, Last: p.last, Sealed: time.Now().UTC(),
	}
	var dst []byte // a small chunk's sealed copy is allocated to fit
	if len(p.b) > smallChunk {
		dst = w.r.sealBufs.get()
	}
	b, err := chunk.AppendSeal(dst, w.aead, f, p.b, rand.Reader)
	if err != nil {
		return sealed{}, err
	}
	h := chunk.Hash(b)
	ci := chunkInfo{Seq: f.Seq, Hash: h, Prev: w.prev, Size: int64(len(b)),
		Events: p.n, First: p.first, Last: p.last, Sealed: f.Sealed}
	w.seq, w.prev = f.Seq, h
	return sealed{b: b, ci: ci, epoch: epoch}, nil
}

// spoolLoop writes sealed chunks to the spool: every chunk waiting is
// written, then the batch is made durable with one directory sync and
// acknowledged in order, each queued for upload. It closes sealerDone once
// sealLoop has finished and everything is written.
func (w *Writer) spoolLoop() {
	defer close(w.sealerDone)
	write := w.t.sp.WriteChunks
	if hook := w.r.cfg.spoolWrite; hook != nil {
		write = func(seq uint64, bodies [][]byte) (int, error) { return hook(w.t.sp, seq, bodies) }
	}
	batch := make([]sealed, 0, maxInFlight)
	bodies := make([][]byte, 0, maxInFlight)
	for s := range w.toSpool {
		batch = append(batch[:0], s)
	more:
		for len(batch) < cap(batch) {
			select {
			case s, ok := <-w.toSpool:
				if !ok {
					break more
				}
				batch = append(batch, s)
			default:
				break more
			}
		}
		w.mu.Lock()
		epoch := w.epoch
		w.mu.Unlock()
		// Chunks sealed onto a chunk that failed to spool cannot be
		// chained: they are dropped with it.
		live := batch[:0]
		for _, s := range batch {
			if s.epoch == epoch {
				live = append(live, s)
			} else {
				w.finish(s, false)
			}
		}
		if len(live) == 0 {
			clear(batch)
			continue
		}
		bodies = bodies[:0]
		for _, s := range live {
			bodies = append(bodies, s.b)
		}
		n, err := write(live[0].ci.Seq, bodies)
		// The buffers go back to the pool: the batch keeps no reference to
		// them while the loop waits for the next chunk.
		clear(bodies)
		for _, s := range live[:n] {
			w.r.chunkSpooled(w.t, s.ci)
			w.finish(s, true)
		}
		if err == nil {
			clear(batch)
			continue
		}
		failed := live[n]
		w.mu.Lock()
		w.epoch++
		w.rewind = &chainLink{seq: failed.ci.Seq - 1, hash: failed.ci.Prev}
		w.mu.Unlock()
		w.fail(fmt.Errorf("%w: spool: %w", ErrRecordingFailed, err))
		for _, s := range live[n:] {
			w.finish(s, false)
		}
		clear(batch)
	}
}

// finish accounts for a chunk the spool writer is done with: durable, or
// dropped with its events.
func (w *Writer) finish(s sealed, durable bool) {
	w.mu.Lock()
	if !durable {
		w.lost = true
		w.dropped += int64(s.ci.Events)
		w.r.forceSpool(-s.ci.Size)
	}
	w.spooled++
	w.broadcast()
	w.mu.Unlock()
	w.r.sealBufs.put(s.b)
}

// chunkSpooled records a spooled chunk and queues its upload.
func (r *Recorder) chunkSpooled(t *track, ci chunkInfo) {
	r.mu.Lock()
	t.chunks = append(t.chunks, ci)
	r.enqueue(job{t: t, seq: ci.Seq})
	r.mu.Unlock()
}
