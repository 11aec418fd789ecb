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
// Callers take an attempt with Reserve before they check a credential:
// the reservation counts as a failure from that instant, and is given
// back with Release when the attempt succeeds or is never checked. So at
// most Max credentials are ever checked per key and window, however many
// attempts run at once.
//
// State is in memory: restarting the process forgets it, and other
// processes count separately. The broker's sign-in and break-glass
// limits use SharedLimiter, which keeps the same counts in the state
// store for every replica.
type Limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu        sync.Mutex
	fails     map[string][]failure // oldest first, at most max entries
	nextID    uint64
	sweepSize int
	lastSweep time.Time
}

// failure is one failed or reserved attempt.
type failure struct {
	at time.Time
	id uint64 // of the Reservation that made it; 0 for Fail
}

// Reservation is an attempt taken from a Limiter's allowance. Unless
// released it stays counted as a failure.
type Reservation struct {
	l    *Limiter
	id   uint64
	keys []string
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
	return &Limiter{max: max, window: window, now: now, fails: map[string][]failure{}, sweepSize: 1024}
}

// Blocked returns the first of keys that has reached the limit, and when
// it will next allow an attempt.
func (l *Limiter) Blocked(keys ...string) (key string, until time.Time, blocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.blocked(keys, l.now())
}

// blocked is Blocked with mu held.
func (l *Limiter) blocked(keys []string, now time.Time) (string, time.Time, bool) {
	for _, k := range keys {
		recent := l.recent(k, now)
		if len(recent) >= l.max {
			// The oldest failure that keeps the key at the limit.
			return k, recent[len(recent)-l.max].at.Add(l.window), true
		}
	}
	return "", time.Time{}, false
}

// Reserve takes one attempt for every key at once, or none when one of
// them is blocked: then it returns that key and when it will next allow
// an attempt, like Blocked. The check and the count are one step, so
// concurrent callers cannot all pass the check before any of them fails.
func (l *Limiter) Reserve(keys ...string) (r *Reservation, key string, until time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if key, until, blocked := l.blocked(keys, now); blocked {
		return nil, key, until, false
	}
	l.nextID++
	r = &Reservation{l: l, id: l.nextID, keys: append([]string(nil), keys...)}
	for _, k := range keys {
		l.fails[k] = append(l.fails[k], failure{at: now, id: r.id})
	}
	l.maybeSweep(now)
	return r, "", time.Time{}, true
}

// Release gives the attempt back, for an attempt that succeeded or whose
// credential was never checked. Releasing twice, or after Reset, is a
// no-op; a nil Reservation may be released.
func (r *Reservation) Release() {
	if r == nil {
		return
	}
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range r.keys {
		f := l.fails[k]
		for i := range f {
			if f[i].id == r.id {
				f = append(f[:i:i], f[i+1:]...)
				break
			}
		}
		if len(f) == 0 {
			delete(l.fails, k)
		} else {
			l.fails[k] = f
		}
	}
}

// Fail records one failure for each key, for callers that did not
// reserve the attempt.
func (l *Limiter) Fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		f := append(l.recent(k, now), failure{at: now})
		if len(f) > l.max {
			f = f[len(f)-l.max:]
		}
		l.fails[k] = f
	}
	l.maybeSweep(now)
}

// Reset forgets the failures of key, after a successful sign-in.
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}

// recent returns key's failures still inside the window at now, dropping
// older ones. Callers hold mu.
func (l *Limiter) recent(key string, now time.Time) []failure {
	f := l.fails[key]
	i := 0
	for i < len(f) && !now.Before(f[i].at.Add(l.window)) {
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

// maybeSweep sweeps when the map has grown or a window has passed since
// the last sweep. Callers hold mu.
func (l *Limiter) maybeSweep(now time.Time) {
	if len(l.fails) >= l.sweepSize || !now.Before(l.lastSweep.Add(l.window)) {
		l.sweep(now)
	}
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
