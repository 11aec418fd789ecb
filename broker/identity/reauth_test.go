package identity

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestReauthenticate: signing needs the password and a fresh TOTP code
// (a token is not enough), each code signs once, wrong guesses count
// against the sign-in limiter, and users who cannot re-authenticate are
// told how to make signing possible.
func TestReauthenticate(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	s, _ := countingService(t, clk)
	key, _ := ParseTOTPSecret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")

	m, err := s.Reauthenticate(ctx, "bob", "bob-pw", TOTP(key, clk.Now()), "10.0.0.1")
	if err != nil || m != MethodPasswordTOTP {
		t.Fatalf("reauth = %q, %v; want password+totp", m, err)
	}
	// The same code again (a replayed signing for another record) is refused.
	if _, err := s.Reauthenticate(ctx, "bob", "bob-pw", TOTP(key, clk.Now()), "10.0.0.1"); CodeOf(err) != CodeReauthFailed {
		t.Fatalf("replayed code: %v, want reauth_failed", err)
	}
	for name, c := range map[string]struct{ user, pw, code, want string }{
		"no totp":                           {"bob", "bob-pw", "", CodeReauthFailed},
		"wrong password":                    {"bob", "guess", "000000", CodeReauthFailed},
		"no second factor (alice has none)": {"alice", "alice-pw", "", CodeSigningUnavailable},
		"no local password (sam)":           {"sam", "", "", CodeSigningUnavailable},
		"unknown user":                      {"nobody", "x", "", CodeSigningUnavailable},
	} {
		if _, err := s.Reauthenticate(ctx, c.user, c.pw, c.code, "10.0.0.2"); CodeOf(err) != c.want {
			t.Errorf("%s: %v, want %s", name, err, c.want)
		}
	}
	// An SSO user (no Custos password) is told how to enable signing.
	_, err = s.Reauthenticate(ctx, "sam", "", "", "10.0.0.2")
	if e, ok := err.(*Error); !ok || !strings.Contains(e.Message, "passkey") || !strings.Contains(e.Message, "local password") {
		t.Errorf("sso user: %v, want a message saying how to enable signing", err)
	}
	// bob has failed three times (replay, no totp, wrong password):
	// max_failures is 3, so even the right credentials are refused now.
	clk.Add(30 * time.Second)
	if _, err := s.Reauthenticate(ctx, "bob", "bob-pw", TOTP(key, clk.Now()), "10.0.0.3"); CodeOf(err) != CodeTooManyAttempts {
		t.Fatalf("after 3 failures: %v, want too_many_attempts", err)
	}
	// The limiter is the sign-in one: Login is refused as well.
	if _, _, err := s.Login(ctx, "bob", "bob-pw", TOTP(key, clk.Now()), "10.0.0.3"); CodeOf(err) != CodeTooManyAttempts {
		t.Fatalf("login after 3 failed signatures: %v, want too_many_attempts", err)
	}
	if n := len(auditRecords(t, s.store, "auth.reauth")); n < 3 {
		t.Fatalf("%d auth.reauth records, want the failures audited", n)
	}
}
