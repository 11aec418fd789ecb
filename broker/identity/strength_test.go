package identity

import (
	"context"
	"testing"
	"time"
)

// A password sign-in records its method and time on the token, with
// "+totp" when a second factor was checked; a web session minted from it
// carries the same; a token bound to another broker's audience is
// refused.
func TestTokenAuthMethodAndAudience(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1234567890, 0).UTC()
	clk := newClock(t0)
	s, _ := newTestService(t, clk)

	_, tok, err := s.Login(ctx, "alice", "alice-pw", "", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AuthMethod != MethodPassword || !tok.AuthTime.Equal(t0) {
		t.Errorf("password token: method %q time %v", tok.AuthMethod, tok.AuthTime)
	}
	_, tok, err = s.Login(ctx, "bob", "bob-pw", TOTP(rfcKey, t0), "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AuthMethod != MethodPasswordTOTP {
		t.Errorf("password+totp token: method %q", tok.AuthMethod)
	}
	_, web, err := s.Tokens().IssueProven(ctx, "bob", KindWeb, "", time.Hour, "10.0.0.1", tok.AuthMethod, tok.AuthTime)
	if err != nil || web.AuthMethod != MethodPasswordTOTP || !web.AuthTime.Equal(t0) {
		t.Errorf("web session: %+v, %v", web, err)
	}

	s.tokens.audience = "https://broker-a.example"
	secret, bound, err := s.Tokens().Issue(ctx, "alice", KindAPI, "", time.Hour, "10.0.0.1")
	if err != nil || bound.Audience != "https://broker-a.example" {
		t.Fatalf("bound token: %+v, %v", bound, err)
	}
	if _, err := s.VerifyToken(ctx, secret, KindAPI); err != nil {
		t.Fatalf("own audience: %v", err)
	}
	s.tokens.audience = "https://broker-b.example"
	if _, err := s.VerifyToken(ctx, secret, KindAPI); CodeOf(err) != CodeTokenInvalid {
		t.Fatalf("another broker's token: %v", err)
	}
}
