package identity

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

// Credentials are what a client presents to sign in. Providers use the
// fields they understand; an OIDC provider would read an authorization
// code or ID token from Token and ignore Password.
type Credentials struct {
	User     string
	Password string
	// TOTP is the current one-time code, when the user has a second factor.
	TOTP string
	// Token carries a provider-issued credential (an OIDC ID token).
	Token string
	// Source is the client's address, for rate limiting and audit.
	Source string
}

// Authenticator checks credentials and returns who presented them. A
// wrong credential is an *Error with CodeLoginFailed whose Reason says
// what was wrong, for the audit log. Implementations: PasswordAuthenticator
// (users from config); an OIDC one can be added beside it.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Identity, error)
}

// PasswordAuthenticator signs in users from the Directory with their
// argon2id password and, when they have one, a TOTP code.
type PasswordAuthenticator struct {
	dir   *Directory
	steps StepGuard
	now   func() time.Time
	// slots bounds concurrent password checks: each one holds the hash's
	// memory (64 MiB by default), so a burst of sign-ins must queue
	// rather than exhaust memory.
	slots chan struct{}
	// passwordChecks and totpChecks count the checks made, for Checks.
	passwordChecks, totpChecks atomic.Int64
	// enrolled finds TOTP secrets users enrolled in the web UI (for
	// users without one in the config file). Nil: none.
	enrolled interface {
		KeyOf(ctx context.Context, user string) ([]byte, error)
	}
}

// CheckCounts are how many credentials an authenticator has checked.
type CheckCounts struct {
	// Passwords is the number of argon2id verifications, the dummy ones
	// for unknown users included.
	Passwords int64
	// TOTP is the number of TOTP codes compared.
	TOTP int64
}

// Checks returns how many passwords and TOTP codes p has checked since it
// was built: what a rate limit has to bound.
func (p *PasswordAuthenticator) Checks() CheckCounts {
	return CheckCounts{Passwords: p.passwordChecks.Load(), TOTP: p.totpChecks.Load()}
}

var _ Authenticator = (*PasswordAuthenticator)(nil)

// NewPasswordAuthenticator returns an authenticator over dir. steps
// defaults to a MemoryStepGuard and now to time.Now.
func NewPasswordAuthenticator(dir *Directory, steps StepGuard, now func() time.Time) *PasswordAuthenticator {
	if steps == nil {
		steps = &MemoryStepGuard{}
	}
	if now == nil {
		now = time.Now
	}
	return &PasswordAuthenticator{dir: dir, steps: steps, now: now, slots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}
}

// checkPassword verifies pw against h once a slot is free, or returns the
// context's error when ctx ends first.
func (p *PasswordAuthenticator) checkPassword(ctx context.Context, h passwordHash, pw string) (bool, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
	defer func() { <-p.slots }()
	p.passwordChecks.Add(1)
	return h.verify(pw), nil
}

// Authenticate implements Authenticator. The password is checked before
// the TOTP code, so a code is only ever consumed by someone who knows the
// password.
func (p *PasswordAuthenticator) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	dir := p.dir.now()
	a, ok := dir.users[c.User]
	if !ok || !a.hasPass {
		// As slow as a real check, so names cannot be probed by timing.
		if _, err := p.checkPassword(ctx, dir.dummy, c.Password); err != nil {
			return Identity{}, fmt.Errorf("authenticate: %w", err)
		}
		switch {
		case dir.disabled[c.User]:
			return Identity{}, loginFailed("user is disabled")
		case ok:
			return Identity{}, loginFailed("user has no password")
		default:
			return Identity{}, loginFailed("unknown user")
		}
	}
	match, err := p.checkPassword(ctx, a.password, c.Password)
	if err != nil {
		return Identity{}, fmt.Errorf("authenticate %s: %w", a.id.Name, err)
	}
	if !match {
		return Identity{}, loginFailed("wrong password")
	}
	totpKey := a.totpKey
	if totpKey == nil && p.enrolled != nil {
		if totpKey, err = p.enrolled.KeyOf(ctx, a.id.Name); err != nil {
			return Identity{}, fmt.Errorf("authenticate %s: %w", a.id.Name, err)
		}
	}
	if totpKey != nil {
		if c.TOTP == "" {
			return Identity{}, loginFailed("totp code missing")
		}
		p.totpChecks.Add(1)
		step, ok := checkTOTP(totpKey, c.TOTP, p.now())
		if !ok {
			return Identity{}, loginFailed("wrong totp code")
		}
		if err := p.steps.Claim(ctx, a.id.Name, step); errors.Is(err, ErrCodeReused) {
			return Identity{}, loginFailed("totp code already used")
		} else if err != nil {
			return Identity{}, fmt.Errorf("authenticate %s: %w", a.id.Name, err)
		}
	}
	return a.id.clone(), nil
}
