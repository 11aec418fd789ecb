package breakglass

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// cheapHash is an argon2id PHC string with tiny parameters, so the test
// counts checks rather than waiting for them.
func cheapHash(pw string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=64,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// TestSecondFactorGuessesBounded is the attacker's test for the
// break-glass confirmation: 300 parallel wrong passwords, and 300 parallel
// wrong TOTP codes with the right password, get at most auth.max_failures
// checks per custodian and per source address.
func TestSecondFactorGuessesBounded(t *testing.T) {
	const n, maxFailures = 300, 4
	cases := []struct {
		name   string
		pw     string
		code   func(i int) string
		source func(i int) string
		user   func(i int) string
	}{
		{"passwords, one custodian", "wrong", func(int) string { return "123456" },
			func(i int) string { return fmt.Sprintf("198.51.100.%d", i%250) }, func(int) string { return "carol" }},
		{"totp codes, one custodian", "carol-pw", func(i int) string { return fmt.Sprintf("%06d", i) },
			func(i int) string { return fmt.Sprintf("198.51.100.%d", i%250) }, func(int) string { return "carol" }},
		{"passwords, one source", "wrong", func(int) string { return "123456" },
			func(int) string { return "192.0.2.7" }, func(i int) string { return []string{"carol", "sam"}[i%2] }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A TOTP secret whose code at the test's instant none of the
			// guesses can be: the clock is chosen so no guess matches.
			const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
			cfg := &config.Config{
				Auth: config.Auth{MaxFailures: maxFailures, FailureWindow: config.Duration(time.Hour)},
				Users: []config.User{
					{Name: "carol", PasswordHash: config.Secret(cheapHash("carol-pw")), TOTPSecret: secret},
					{Name: "sam", PasswordHash: config.Secret(cheapHash("sam-pw")), TOTPSecret: secret},
				},
			}
			dir, err := identity.NewDirectory(cfg)
			if err != nil {
				t.Fatal(err)
			}
			key, _ := identity.ParseTOTPSecret(secret)
			now := t0
			for right := identity.TOTP(key, now); right < fmt.Sprintf("%06d", n); right = identity.TOTP(key, now) {
				now = now.Add(time.Minute)
			}
			clock := func() time.Time { return now }
			pa := identity.NewPasswordAuthenticator(dir, &identity.MemoryStepGuard{}, clock)
			s := &Service{auth: pa, now: clock,
				limiter: identity.NewSharedLimiter(openStore(t), "breakglass", cfg.Auth.MaxFailures, cfg.Auth.FailureWindow.D(), clock)}
			a := &config.BreakGlassAccount{Name: "pg-admin"}

			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[string]int{}
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					_, err := s.checkFactor(context.Background(), a, tc.user(i), Factor{Password: tc.pw, TOTP: tc.code(i), Source: tc.source(i)})
					e, ok := AsError(err)
					if !ok {
						t.Errorf("attempt %d: %v", i, err)
						return
					}
					mu.Lock()
					codes[e.Code]++
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			got := pa.Checks()
			if got.Passwords > maxFailures || got.TOTP > maxFailures {
				t.Fatalf("%+v checks, want at most %d of each (outcomes %v)", got, maxFailures, codes)
			}
			if codes["too_many_attempts"] < n-maxFailures {
				t.Fatalf("outcomes %v: want at least %d too_many_attempts", codes, n-maxFailures)
			}
		})
	}
}

func openStore(t *testing.T) broker.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
