package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/spool"
)

// stalledSpool is a spool write hook that holds every write until
// released, then fails the batch holding failSeq (once), if set.
type stalledSpool struct {
	mu      sync.Mutex
	release chan struct{}
	failSeq uint64
	failed  bool
	calls   int
}

func newStalledSpool() *stalledSpool { return &stalledSpool{release: make(chan struct{})} }

func (s *stalledSpool) write(sp *spool.Session, seq uint64, bodies [][]byte) (int, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	<-s.release
	s.mu.Lock()
	fail := !s.failed && s.failSeq >= seq && s.failSeq < seq+uint64(len(bodies))
	s.failed = s.failed || fail
	s.mu.Unlock()
	if fail {
		ok := int(s.failSeq - seq)
		n, err := sp.WriteChunks(seq, bodies[:ok])
		if err != nil {
			return n, err
		}
		return n, fmt.Errorf("disk full at chunk %d", s.failSeq)
	}
	return sp.WriteChunks(seq, bodies)
}

func (s *stalledSpool) waitCalled(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		s.mu.Lock()
		n := s.calls
		s.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the spool was never written")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterWaitsOnlyWhenInFlightFull proves the relay's calls never wait
// on the disk while fewer than maxInFlight closed chunks are pending, and
// do wait, bounding memory, once that many are.
func TestWriterWaitsOnlyWhenInFlightFull(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	stall := newStalledSpool()
	r := env.recorder(func(c *Config) { c.ChunkSize = 4 << 10; c.spoolWrite = stall.write })
	w, err := r.Start(ctx, testHeader("ses_stall"))
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte("o"), 4<<10) // closes a chunk per call
	w.Output(1, p)
	stall.waitCalled(t) // the first chunk is stuck in the spool writer
	for i := 1; i < maxInFlight; i++ {
		done := make(chan error, 1)
		go func() { done <- w.Output(1, p) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("write %d waited for the disk with %d chunks in flight", i+1, i)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- w.Output(1, p) }()
	select {
	case err := <-blocked:
		t.Fatalf("write returned (%v) with %d chunks in flight", err, maxInFlight)
	case <-time.After(200 * time.Millisecond):
	}
	close(stall.release)
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write still waiting after the disk caught up")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	var n int
	for _, e := range readAll(t, r, "ses_stall") {
		n += len(e.Data)
	}
	if n != (maxInFlight+1)*len(p) {
		t.Fatalf("recorded %d bytes, want %d", n, (maxInFlight+1)*len(p))
	}
}

// TestFailedSpoolWriteRewindsChain: when a chunk cannot be written, the
// chunks already sealed onto it are dropped too, and the chain continues
// from the last durable chunk, so what is stored verifies.
func TestFailedSpoolWriteRewindsChain(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	stall := newStalledSpool()
	stall.failSeq = 3
	r := env.recorder(func(c *Config) { c.ChunkSize = 4 << 10; c.spoolWrite = stall.write })
	h := testHeader("ses_rewind")
	h.Policy.FailOpen = true
	w, err := r.Start(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	chunkOf := func(s string) []byte { return bytes.Repeat([]byte(s), 4<<10/len(s)) }
	// Chunk 1 holds the start event and "a"; the writer stalls on it
	// while "b" to "f" are sealed behind it.
	w.Output(1, chunkOf("a"))
	stall.waitCalled(t)
	for _, s := range []string{"b", "c", "d", "e", "f"} {
		if err := w.Output(1, chunkOf(s)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); len(w.toSpool) < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks sealed behind the stalled one, want 5", len(w.toSpool))
		}
		time.Sleep(time.Millisecond)
	}
	close(stall.release)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(w.Err(), ErrRecordingFailed) {
		t.Fatalf("Err = %v", w.Err())
	}
	if err := w.Output(1, chunkOf("z")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	rep, err := r.Verify(ctx, "ses_rewind")
	if err != nil || !rep.Intact || rep.State != "interrupted" {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	var got []byte
	for _, e := range readAll(t, r, "ses_rewind") {
		if len(e.Data) > 0 {
			got = append(got, e.Data[0])
		}
	}
	// Chunk 3 ("c") failed; "d" to "f" were chained onto it and are lost
	// with it (but not "b", written in the same batch before it); "z"
	// continues the chain as chunk 3.
	if string(got) != "abz" {
		t.Fatalf("recorded %q, want a, b, then z", got)
	}
	if rep.Chunks != 4 { // a, b, z, and the end event's chunk
		t.Fatalf("%d chunks stored", rep.Chunks)
	}
}
