package identity

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// countingService is newTestService with a PasswordAuthenticator the test
// can read the check counts of.
func countingService(t *testing.T, clk *clock) (*Service, *PasswordAuthenticator) {
	t.Helper()
	cfg, _ := testConfig(t)
	cfg.Auth = config.Auth{TokenTTL: config.Duration(2 * time.Hour), MaxFailures: 3, FailureWindow: config.Duration(10 * time.Minute)}
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	log := audit.NewLog(st)
	pa := NewPasswordAuthenticator(d, StoreStepGuard{Store: st}, clk.Now)
	s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: log, Now: clk.Now, Authenticator: pa,
		Rejections: audit.NewThrottle(log, audit.ThrottleOptions{Now: clk.Now})})
	if err != nil {
		t.Fatal(err)
	}
	return s, pa
}

// parallelLogins runs n sign-ins at once, released together, and returns
// how many were refused by the rate limiter.
func parallelLogins(t *testing.T, s *Service, n int, user, pw, code func(i int) string, source func(i int) string) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	limited := 0
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, err := s.Login(context.Background(), user(i), pw(i), code(i), source(i))
			switch CodeOf(err) {
			case CodeTooManyAttempts:
				mu.Lock()
				limited++
				mu.Unlock()
			case CodeLoginFailed:
			default:
				t.Errorf("attempt %d: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return limited
}

func fixed(s string) func(int) string { return func(int) string { return s } }

// TestParallelGuessesBounded is the attacker's test: 300 wrong guesses
// sent at once get at most auth.max_failures (3) checks, per user and per
// source, for passwords and for TOTP codes.
func TestParallelGuessesBounded(t *testing.T) {
	const n, maxFailures = 300, 3
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	perSource := func(i int) string { return fmt.Sprintf("198.51.100.%d", i%250) }

	t.Run("passwords for one user", func(t *testing.T) {
		s, pa := countingService(t, newClock(t0))
		limited := parallelLogins(t, s, n, fixed("alice"), func(i int) string { return fmt.Sprintf("guess-%d", i) }, fixed(""), perSource)
		if got := pa.Checks().Passwords; got > maxFailures {
			t.Fatalf("%d password checks for one user, want at most %d", got, maxFailures)
		}
		if limited < n-maxFailures {
			t.Fatalf("%d attempts rate-limited, want at least %d", limited, n-maxFailures)
		}
		// The right password is refused too until the window passes.
		if _, _, err := s.Login(context.Background(), "alice", "alice-pw", "", "203.0.113.1"); CodeOf(err) != CodeTooManyAttempts {
			t.Fatalf("right password after the guesses: %v", err)
		}
	})
	t.Run("passwords from one source", func(t *testing.T) {
		s, pa := countingService(t, newClock(t0))
		parallelLogins(t, s, n, func(i int) string { return fmt.Sprintf("user%d", i) }, fixed("guess"), fixed(""), fixed("192.0.2.7"))
		if got := pa.Checks().Passwords; got > maxFailures {
			t.Fatalf("%d password checks from one source, want at most %d", got, maxFailures)
		}
	})
	t.Run("totp codes", func(t *testing.T) {
		s, pa := countingService(t, newClock(t0))
		right := TOTP(rfcKey, t0)
		code := func(i int) string {
			c := fmt.Sprintf("%06d", i)
			if c == right {
				c = "999999"
			}
			return c
		}
		parallelLogins(t, s, n, fixed("bob"), fixed("bob-pw"), code, perSource)
		if got := pa.Checks(); got.TOTP > maxFailures || got.Passwords > maxFailures {
			t.Fatalf("%+v checks for one user, want at most %d of each", got, maxFailures)
		}
	})
}

// TestLoginSuccessGivesAttemptBack: a right sign-in does not count against
// its address, and a sign-in that never checked its credentials (the
// context ended while waiting) does not count either.
func TestLoginSuccessGivesAttemptBack(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	s, _ := countingService(t, newClock(t0))
	for i := range 10 {
		if _, _, err := s.Login(context.Background(), "alice", "alice-pw", "", "192.0.2.1"); err != nil {
			t.Fatalf("sign-in %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Fill the check slots so the next attempts wait and see the context end.
	pa := s.auth.(*PasswordAuthenticator)
	for range cap(pa.slots) {
		pa.slots <- struct{}{}
	}
	for range 10 {
		if _, _, err := s.Login(ctx, "alice", "x", "", "192.0.2.1"); err == nil || CodeOf(err) != "" {
			t.Fatalf("cancelled sign-in: %v", err)
		}
	}
	for range cap(pa.slots) {
		<-pa.slots
	}
	if _, _, err := s.Login(context.Background(), "alice", "alice-pw", "", "192.0.2.1"); err != nil {
		t.Fatalf("sign-in after cancelled attempts: %v", err)
	}
}
