package identity

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPasswordAuthenticator(t *testing.T) {
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// bob has the RFC 6238 seed as TOTP secret.
	t0 := time.Unix(1111111111, 0)
	clk := newClock(t0)
	a := NewPasswordAuthenticator(d, &MemoryStepGuard{}, clk.Now)
	step := totpCounter(t0)
	code := func(s int64) string { return hotp(rfcKey, uint64(s), 6) }

	tests := []struct {
		name   string
		at     time.Time
		c      Credentials
		user   string // "" for a refusal
		reason string
	}{
		{name: "password only user", c: Credentials{User: "alice", Password: "alice-pw"}, user: "alice"},
		{name: "wrong password", c: Credentials{User: "alice", Password: "alice-pw "}, reason: "wrong password"},
		{name: "empty password", c: Credentials{User: "alice"}, reason: "wrong password"},
		{name: "user names are exact", c: Credentials{User: "Alice", Password: "alice-pw"}, reason: "unknown user"},
		{name: "unknown user", c: Credentials{User: "zed", Password: "x"}, reason: "unknown user"},
		{name: "disabled user with the right password", c: Credentials{User: "mallory", Password: "mallory-pw"}, reason: "user is disabled"},
		{name: "user without a password", c: Credentials{User: "sam", Password: ""}, reason: "user has no password"},
		{name: "totp missing", c: Credentials{User: "bob", Password: "bob-pw"}, reason: "totp code missing"},
		{name: "wrong totp", c: Credentials{User: "bob", Password: "bob-pw", TOTP: code(step + 5)}, reason: "wrong totp code"},
		{name: "right totp with wrong password does not say so", c: Credentials{User: "bob", Password: "nope", TOTP: code(step)}, reason: "wrong password"},
		{name: "right password and totp", c: Credentials{User: "bob", Password: "bob-pw", TOTP: code(step)}, user: "bob"},
		{name: "same code again", c: Credentials{User: "bob", Password: "bob-pw", TOTP: code(step)}, reason: "totp code already used"},
		{name: "older code after a newer one", c: Credentials{User: "bob", Password: "bob-pw", TOTP: code(step - 1)}, reason: "totp code already used"},
		{name: "next step's code", at: t0.Add(30 * time.Second), c: Credentials{User: "bob", Password: "bob-pw", TOTP: code(step + 1)}, user: "bob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.at.IsZero() {
				clk.Set(tt.at)
			}
			id, err := a.Authenticate(context.Background(), tt.c)
			if tt.user != "" {
				if err != nil || id.Name != tt.user {
					t.Fatalf("got %q, %v; want %s", id.Name, err, tt.user)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeLoginFailed || e.Detail != tt.reason {
				t.Fatalf("err = %#v, want login_failed because %q", err, tt.reason)
			}
			if e.Message != loginFailed("").Message {
				t.Fatalf("message %q reveals more than the generic one", e.Message)
			}
		})
	}
}

// A code is consumed only by a correct password: someone guessing
// passwords cannot burn the user's current code.
func TestWrongPasswordDoesNotConsumeCode(t *testing.T) {
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1234567890, 0)
	a := NewPasswordAuthenticator(d, nil, func() time.Time { return now })
	code := TOTP(rfcKey, now)
	if _, err := a.Authenticate(context.Background(), Credentials{User: "bob", Password: "guess", TOTP: code}); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("guess: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), Credentials{User: "bob", Password: "bob-pw", TOTP: code}); err != nil {
		t.Fatalf("real sign-in after a guess: %v", err)
	}
}

// Password checks queue for a slot instead of all allocating hash memory
// at once, and a caller that gives up while queued gets its context error.
func TestPasswordChecksAreBounded(t *testing.T) {
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := NewPasswordAuthenticator(d, nil, nil)
	for range cap(a.slots) {
		a.slots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for _, user := range []string{"alice", "zed"} {
		if _, err := a.Authenticate(ctx, Credentials{User: user, Password: "alice-pw"}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s with every slot taken: %v", user, err)
		}
	}
	<-a.slots
	if _, err := a.Authenticate(context.Background(), Credentials{User: "alice", Password: "alice-pw"}); err != nil {
		t.Fatalf("with a free slot: %v", err)
	}
	if len(a.slots) != cap(a.slots)-1 {
		t.Fatalf("slot not released: %d of %d taken", len(a.slots), cap(a.slots))
	}
}
