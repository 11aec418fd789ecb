package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
)

// SharedLimiter is a Limiter whose counts live in the state store, so
// every broker on the same store (replicas behind a load balancer) counts
// the same failures, and a restart forgets none. The rules are the
// Limiter's: a key is blocked while it has Max or more failures younger
// than Window; Reserve counts an attempt as failed before its credential
// is checked, Release gives it back. Each call is one store transaction,
// and the store serializes them, so concurrent attempts on several
// brokers cannot all pass the check before one of them counts.
type SharedLimiter struct {
	store  broker.Store
	prefix string
	max    int
	window time.Duration
	now    func() time.Time
}

// NewSharedLimiter returns a SharedLimiter keeping its counts in st under
// prefix (such as "signin"), allowing max failures per key within
// window; the defaults are NewLimiter's.
func NewSharedLimiter(st broker.Store, prefix string, max int, window time.Duration, now func() time.Time) *SharedLimiter {
	l := NewLimiter(max, window, now)
	return &SharedLimiter{store: st, prefix: prefix, max: l.max, window: l.window, now: l.now}
}

// SharedReservation is an attempt taken from a SharedLimiter's allowance.
// Unless released it stays counted as a failure.
type SharedReservation struct {
	l    *SharedLimiter
	id   string
	keys []string
}

// sharedFailure is one failed or reserved attempt as stored.
type sharedFailure struct {
	At time.Time `json:"at"`
	ID string    `json:"id,omitempty"`
}

// sharedKey is the store key of a limiter key: hashed, so neither a long
// attempted user name nor an address is written to the store as is.
func (l *SharedLimiter) sharedKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.prefix + "/" + hex.EncodeToString(sum[:16])
}

// load returns key's failures still inside the window at now, oldest
// first.
func (l *SharedLimiter) load(tx broker.Tx, key string, now time.Time) ([]sharedFailure, error) {
	b, err := tx.GetLimit(l.sharedKey(key))
	if errors.Is(err, broker.ErrNotFound) {
		return nil, nil
	}
	if err != nil || len(b) == 0 {
		return nil, err
	}
	var f []sharedFailure
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	i := 0
	for i < len(f) && !now.Before(f[i].At.Add(l.window)) {
		i++
	}
	return f[i:], nil
}

// save stores key's failures until the newest leaves the window.
func (l *SharedLimiter) save(tx broker.Tx, key string, f []sharedFailure, now time.Time) error {
	if len(f) > l.max {
		f = f[len(f)-l.max:]
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	expires := now
	if len(f) > 0 {
		expires = f[len(f)-1].At.Add(l.window)
	}
	return tx.PutLimit(l.sharedKey(key), b, expires)
}

// Reserve takes one attempt for every key at once, or none when one of
// them is blocked: then it returns that key and when it will next allow
// an attempt. It fails only when the store does; the caller should then
// refuse the attempt.
func (l *SharedLimiter) Reserve(ctx context.Context, keys ...string) (r *SharedReservation, key string, until time.Time, ok bool, err error) {
	id := broker.NewID("att")
	err = l.store.Update(ctx, func(tx broker.Tx) error {
		now := l.now()
		key, until, ok = "", time.Time{}, false
		lists := make([][]sharedFailure, len(keys))
		for i, k := range keys {
			f, err := l.load(tx, k, now)
			if err != nil {
				return err
			}
			if len(f) >= l.max {
				key, until = k, f[len(f)-l.max].At.Add(l.window)
				return nil
			}
			lists[i] = f
		}
		for i, k := range keys {
			if err := l.save(tx, k, append(lists[i], sharedFailure{At: now, ID: id}), now); err != nil {
				return err
			}
		}
		ok = true
		return nil
	})
	if err != nil {
		return nil, "", time.Time{}, false, fmt.Errorf("rate limit: reserve: %w", err)
	}
	if !ok {
		return nil, key, until, false, nil
	}
	return &SharedReservation{l: l, id: id, keys: append([]string(nil), keys...)}, "", time.Time{}, true, nil
}

// Release gives the attempt back, for an attempt that succeeded or whose
// credential was never checked. Releasing twice is a no-op; a nil
// reservation may be released.
func (r *SharedReservation) Release(ctx context.Context) error {
	if r == nil {
		return nil
	}
	l := r.l
	err := l.store.Update(ctx, func(tx broker.Tx) error {
		now := l.now()
		for _, k := range r.keys {
			f, err := l.load(tx, k, now)
			if err != nil {
				return err
			}
			kept := f[:0:0]
			for _, x := range f {
				if x.ID != r.id {
					kept = append(kept, x)
				}
			}
			if len(kept) == len(f) {
				continue
			}
			if err := l.save(tx, k, kept, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rate limit: release: %w", err)
	}
	return nil
}

// Reset forgets the failures of key, after a successful sign-in.
func (l *SharedLimiter) Reset(ctx context.Context, key string) error {
	err := l.store.Update(ctx, func(tx broker.Tx) error { return l.save(tx, key, nil, l.now()) })
	if err != nil {
		return fmt.Errorf("rate limit: reset: %w", err)
	}
	return nil
}

// PurgeExpiredLimits deletes the rate-limit documents (of every limiter
// and throttle on st) that expired before the given instant.
func PurgeExpiredLimits(ctx context.Context, st broker.Store, before time.Time) (int, error) {
	var n int
	err := st.Update(ctx, func(tx broker.Tx) error {
		var err error
		n, err = tx.DeleteExpiredLimits(before)
		return err
	})
	return n, err
}
