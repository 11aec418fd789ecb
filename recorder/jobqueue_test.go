package recorder

import (
	"context"
	"testing"
	"time"
)

// TestJobQueueKeepsNoStoredSession: after an outage the upload queue holds
// thousands of chunks; once they are taken, no slot of the queue's array
// may still point at a session, or every session stored since stays in
// memory (its chunk list and header) for as long as the broker runs.
func TestJobQueueKeepsNoStoredSession(t *testing.T) {
	r := &Recorder{ctx: context.Background(), jobWake: make(chan struct{}, 1)}
	const n = 5000
	r.mu.Lock()
	for i := range n {
		j := job{t: &track{id: "ses"}, seq: uint64(i + 1)}
		if i%10 == 0 {
			j.notBefore = time.Now().Add(-time.Second) // a retry now due: taken from the middle too
		}
		r.enqueue(j)
	}
	arr := r.jobs[:cap(r.jobs)]
	r.mu.Unlock()
	for range n {
		if _, ok := r.nextJob(); !ok {
			t.Fatal("queue ended early")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.jobs) != 0 {
		t.Fatalf("%d jobs left", len(r.jobs))
	}
	for i, j := range arr {
		if j.t != nil {
			t.Fatalf("slot %d of the drained queue still holds a session's track", i)
		}
	}
}
