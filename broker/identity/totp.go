package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
)

// TOTP parameters (RFC 6238 defaults, as authenticator apps use them).
const (
	totpStep   = 30 * time.Second
	totpDigits = 6
	// totpSkew is how many steps before and after the current one are
	// accepted, for clock drift and typing time.
	totpSkew = 1
	// minTOTPKey is the shortest accepted secret: 80 bits, what most
	// authenticator enrolments use. RFC 4226 recommends 160.
	minTOTPKey = 10
)

// ErrCodeReused is returned by a StepGuard when a TOTP code, or an older
// one, was already used.
var ErrCodeReused = errors.New("totp code already used")

// ParseTOTPSecret decodes a base32 TOTP secret as authenticator apps show
// it: case-insensitive, spaces and padding allowed.
func ParseTOTPSecret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	s = strings.TrimRight(s, "=")
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		return nil, errors.New("totp secret: not base32")
	}
	if len(key) < minTOTPKey {
		return nil, fmt.Errorf("totp secret: %d bytes is too short (at least %d)", len(key), minTOTPKey)
	}
	return key, nil
}

// hotp is RFC 4226 HOTP with HMAC-SHA1 and dynamic truncation.
func hotp(key []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	code := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, code%mod)
}

// totpCounter is the RFC 6238 time step number of t.
func totpCounter(t time.Time) int64 {
	return t.Unix() / int64(totpStep/time.Second)
}

// TOTP returns the 6-digit code for key at t.
func TOTP(key []byte, t time.Time) string {
	return hotp(key, uint64(totpCounter(t)), totpDigits)
}

// checkTOTP returns the time step whose code equals code, searching the
// current step and totpSkew steps either side, or false.
func checkTOTP(key []byte, code string, now time.Time) (int64, bool) {
	code = strings.TrimSpace(code)
	if len(code) != totpDigits {
		return 0, false
	}
	cur := totpCounter(now)
	found, step := 0, int64(0)
	// Compare against every candidate, without stopping early.
	for s := cur - totpSkew; s <= cur+totpSkew; s++ {
		if subtle.ConstantTimeCompare([]byte(hotp(key, uint64(s), totpDigits)), []byte(code)) == 1 && found == 0 {
			found, step = 1, s
		}
	}
	return step, found == 1
}

// StepGuard stops TOTP replay: a code is accepted only if its time step is
// later than the last step the same user signed in with (RFC 6238 §5.2),
// so a code can never be used twice, nor an older code after a newer one.
type StepGuard interface {
	// Claim records step as the user's last used step, or returns
	// ErrCodeReused when step is not after the last one.
	Claim(ctx context.Context, user string, step int64) error
}

// MemoryStepGuard keeps last used steps in memory. It fits a single
// broker process; use StoreStepGuard when replicas share a store.
type MemoryStepGuard struct {
	mu   sync.Mutex
	last map[string]int64
}

// Claim implements StepGuard.
func (g *MemoryStepGuard) Claim(_ context.Context, user string, step int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil {
		g.last = map[string]int64{}
	}
	if last, ok := g.last[user]; ok && step <= last {
		return ErrCodeReused
	}
	g.last[user] = step
	return nil
}

// StoreStepGuard keeps last used steps in the state store, so every
// broker replica sharing the store refuses a code already used on another.
type StoreStepGuard struct {
	Store broker.Store
}

// Claim implements StepGuard in one store transaction.
func (g StoreStepGuard) Claim(ctx context.Context, user string, step int64) error {
	key := "identity/totp-step/" + user
	return g.Store.Update(ctx, func(tx broker.Tx) error {
		var last struct {
			Step int64 `json:"step"`
		}
		b, err := tx.GetState(key)
		switch {
		case errors.Is(err, broker.ErrNotFound):
		case err != nil:
			return fmt.Errorf("totp guard: %w", err)
		default:
			if err := json.Unmarshal(b, &last); err != nil {
				return fmt.Errorf("totp guard: decode state: %w", err)
			}
			if step <= last.Step {
				return ErrCodeReused
			}
		}
		last.Step = step
		b, _ = json.Marshal(last)
		if err := tx.PutState(key, b); err != nil {
			return fmt.Errorf("totp guard: %w", err)
		}
		return nil
	})
}
