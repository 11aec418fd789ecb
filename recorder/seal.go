package recorder

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/custos-pam/custos/recorder/chunk"
)

// sealLoop closes chunks on time, seals them and writes them to the spool.
// It exits once the writer is closing and everything is spooled.
func (w *Writer) sealLoop() {
	defer close(w.sealerDone)
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
			err := w.seal(p)
			w.mu.Lock()
			if err != nil {
				w.lost = true
				w.dropped += int64(p.n)
			}
			w.spooled++
			if len(w.free) < 2 {
				w.free = append(w.free, p.b[:0])
			}
			w.broadcast()
			w.mu.Unlock()
			if err != nil {
				w.fail(fmt.Errorf("%w: spool: %w", ErrRecordingFailed, err))
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

// seal encrypts one chunk, writes it durably to the spool and queues its
// upload. A chunk that cannot be spooled is dropped without taking a
// sequence number, so the chain stays unbroken over what was stored.
func (w *Writer) seal(p pending) error {
	f := chunk.Frame{
		SessionID: w.header.SessionID, Seq: w.seq + 1, Prev: w.prev,
		Events: p.n, First: p.first, Last: p.last, Sealed: time.Now().UTC(),
	}
	b, err := chunk.Seal(w.aead, f, p.b, rand.Reader)
	if err != nil {
		return err
	}
	if err := w.t.sp.WriteChunk(f.Seq, b); err != nil {
		return err
	}
	w.seq = f.Seq
	h := chunk.Hash(b)
	w.r.chunkSpooled(w.t, chunkInfo{Seq: f.Seq, Hash: h, Prev: w.prev, Size: int64(len(b)),
		Events: p.n, First: p.first, Last: p.last, Sealed: f.Sealed})
	w.prev = h
	return nil
}

// chunkSpooled records a spooled chunk and queues its upload.
func (r *Recorder) chunkSpooled(t *track, ci chunkInfo) {
	r.mu.Lock()
	t.chunks = append(t.chunks, ci)
	r.enqueue(job{t: t, seq: ci.Seq})
	r.mu.Unlock()
}
