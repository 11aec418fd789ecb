package identity

import (
	"sync"
	"time"
)

// Limiter counts failed sign-ins per key (a user name or a source
// address) over a sliding window. A key is blocked while it has Max or
// more failures younger than Window; each failure stops counting exactly
// Window after it happened. Refused attempts are not failures, so a
// blocked key unblocks on schedule however often it is retried.
//
// State is in memory: restarting the broker forgets it, and replicas
// count separately.
type Limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu        sync.Mutex
	fails     map[string][]time.Time // newest last, at most max entries
	sweepSize int
	lastSweep time.Time
}

// NewLimiter returns a Limiter allowing max failures per key within
// window. max <= 0 means 5 and window <= 0 means 15 minutes, the config
// defaults. now defaults to time.Now.
func NewLimiter(max int, window time.Duration, now func() time.Time) *Limiter {
	if max <= 0 {
		max = 5
	}
	if window <= 0 {
		window = 15 * time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{max: max, window: window, now: now, fails: map[string][]time.Time{}, sweepSize: 1024}
}

// Blocked returns the first of keys that has reached the limit, and when
// it will next allow an attempt.
func (l *Limiter) Blocked(keys ...string) (key string, until time.Time, blocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		recent := l.recent(k, now)
		if len(recent) >= l.max {
			// The oldest failure that keeps the key at the limit.
			return k, recent[len(recent)-l.max].Add(l.window), true
		}
	}
	return "", time.Time{}, false
}

// Fail records one failure for each key.
func (l *Limiter) Fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		f := append(l.recent(k, now), now)
		if len(f) > l.max {
			f = f[len(f)-l.max:]
		}
		l.fails[k] = f
	}
	if len(l.fails) >= l.sweepSize || !now.Before(l.lastSweep.Add(l.window)) {
		l.sweep(now)
	}
}

// Reset forgets the failures of key, after a successful sign-in.
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}

// recent returns key's failures still inside the window at now, dropping
// older ones. Callers hold mu.
func (l *Limiter) recent(key string, now time.Time) []time.Time {
	f := l.fails[key]
	i := 0
	for i < len(f) && !now.Before(f[i].Add(l.window)) {
		i++
	}
	if i == len(f) {
		delete(l.fails, key)
		return nil
	}
	f = f[i:]
	l.fails[key] = f
	return f
}

// sweep drops keys without recent failures. It runs at least once per
// window and whenever the map doubles, so memory stays bounded by the keys
// that failed within about one window. Callers hold mu.
func (l *Limiter) sweep(now time.Time) {
	for k := range l.fails {
		l.recent(k, now)
	}
	l.sweepSize = max(1024, 2*len(l.fails))
	l.lastSweep = now
}
