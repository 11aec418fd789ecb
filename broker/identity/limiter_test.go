package identity

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestLimiterSlidingWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	l := NewLimiter(3, 10*time.Minute, clk.Now)
	blocked := func(keys ...string) bool { _, _, b := l.Blocked(keys...); return b }

	l.Fail("user:alice")
	clk.Add(time.Minute)
	l.Fail("user:alice")
	if blocked("user:alice") {
		t.Fatal("blocked after max-1 failures")
	}
	clk.Add(time.Minute) // t0+2m
	l.Fail("user:alice")
	key, until, b := l.Blocked("addr:10.0.0.1", "user:alice")
	if !b || key != "user:alice" || !until.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("after max failures: %q %v %v", key, until, b)
	}
	// Asking again while blocked does not extend the block.
	for range 10 {
		l.Blocked("user:alice")
	}
	clk.Set(t0.Add(10*time.Minute - time.Nanosecond))
	if !blocked("user:alice") {
		t.Fatal("unblocked before the oldest failure left the window")
	}
	clk.Set(t0.Add(10 * time.Minute))
	if blocked("user:alice") {
		t.Fatal("still blocked when the oldest failure is exactly window old")
	}
	// Two failures remain in the window; one more blocks again, until the
	// second-oldest failure leaves.
	l.Fail("user:alice")
	if _, until, b := l.Blocked("user:alice"); !b || !until.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("re-block: %v %v", until, b)
	}
	if blocked("user:bob", "addr:10.0.0.1") {
		t.Fatal("other keys are blocked")
	}
	l.Reset("user:alice")
	if blocked("user:alice") {
		t.Fatal("blocked after Reset")
	}
}

func TestLimiterKeepsAtMostMaxPerKey(t *testing.T) {
	clk := newClock(time.Unix(0, 0))
	l := NewLimiter(2, time.Hour, clk.Now)
	for range 100 {
		l.Fail("addr:x")
		clk.Add(time.Second)
	}
	if n := len(l.fails["addr:x"]); n != 2 {
		t.Fatalf("kept %d failures, want 2", n)
	}
	if _, until, _ := l.Blocked("addr:x"); !until.Equal(time.Unix(98+3600, 0)) {
		t.Fatalf("until = %v", until)
	}
}

func TestLimiterSweepsStaleKeys(t *testing.T) {
	clk := newClock(time.Unix(0, 0))
	l := NewLimiter(5, time.Minute, clk.Now)
	for i := range 5000 {
		l.Fail(fmt.Sprintf("addr:%d", i))
	}
	clk.Add(time.Minute)
	l.Fail("addr:fresh")
	for i := range 2000 {
		l.Fail(fmt.Sprintf("user:%d", i))
	}
	if n := len(l.fails); n > 2001 {
		t.Fatalf("%d keys tracked after the window passed, want at most 2001", n)
	}
}

func TestLimiterDefaults(t *testing.T) {
	l := NewLimiter(0, 0, nil)
	if l.max != 5 || l.window != 15*time.Minute {
		t.Fatalf("defaults: %d %v", l.max, l.window)
	}
}

// TestLimiterReserveUnderConcurrency: of many concurrent reservations
// exactly max succeed; releasing one lets exactly one more in.
func TestLimiterReserveUnderConcurrency(t *testing.T) {
	clk := newClock(time.Unix(0, 0))
	l := NewLimiter(4, time.Hour, clk.Now)
	var mu sync.Mutex
	var got []*Reservation
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, _, _, ok := l.Reserve("user:alice", fmt.Sprintf("addr:%d", i)); ok {
				mu.Lock()
				got = append(got, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != 4 {
		t.Fatalf("%d reservations, want 4", len(got))
	}
	if _, _, _, ok := l.Reserve("user:alice"); ok {
		t.Fatal("reserved past the limit")
	}
	got[0].Release()
	got[0].Release() // twice is a no-op
	if _, _, _, ok := l.Reserve("user:alice"); !ok {
		t.Fatal("no reservation after a release")
	}
	if _, _, _, ok := l.Reserve("user:alice"); ok {
		t.Fatal("a double release gave back two attempts")
	}
	// A blocked key takes nothing from the others.
	if _, key, _, ok := l.Reserve("addr:fresh", "user:alice"); ok || key != "user:alice" {
		t.Fatalf("reserve with a blocked key: %v %q", ok, key)
	}
	if n := len(l.fails["addr:fresh"]); n != 0 {
		t.Fatalf("blocked reservation counted %d on the other key", n)
	}
}
