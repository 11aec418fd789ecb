package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Re-authentication refusal codes, besides CodeLoginFailed and
// CodeTooManyAttempts.
const (
	// CodeSigningUnavailable: the user has no password and second factor
	// to re-authenticate with (an SSO user, or a local user without TOTP).
	CodeSigningUnavailable = "signing_unavailable"
	// CodeReauthFailed: the password or code given to sign was wrong or
	// already used. Forbidden rather than unauthenticated: the caller's
	// token is fine, the signature is not.
	CodeReauthFailed = "reauth_failed"
)

// Reauthenticate checks, at the moment of an electronic signature, that
// user is still the person at the keyboard: their password and a current
// TOTP code. A bearer token proves nothing here. The attempt counts
// against the same sign-in limiter as Login (per user and per source
// address), and a TOTP code is single-use, so one re-authentication can
// sign one record only. It returns the method ("password+totp").
// A user without a local password (SSO) or without TOTP is refused with
// CodeSigningUnavailable, saying how to make signing possible. Failures
// are audited as auth.reauth with the reason, never the credential.
func (s *Service) Reauthenticate(ctx context.Context, user, password, totp, source string) (string, error) {
	x := s.dir.now()
	a, local := x.users[user]
	switch {
	case !local || !a.hasPass:
		return "", signingUnavailable(
			"signing needs a re-authentication: "+user+" has no Custos password; sign with a passkey (register one in the web UI), or ask an administrator for a local password and TOTP",
			"reauth: no local password")
	case a.totpKey == nil:
		return "", signingUnavailable(
			"signing needs a second factor: "+user+" has no TOTP; ask an administrator to enrol one (totp_secret) or register a passkey",
			"reauth: no second factor")
	}
	keys := []string{"user:" + user}
	if source != "" {
		keys = append(keys, "addr:"+source)
	}
	res, _, until, ok, err := s.limiter.Reserve(ctx, keys...)
	if err != nil {
		return "", fmt.Errorf("reauthenticate: %w", err)
	}
	if !ok {
		e := &Error{Kind: broker.KindRateLimited, Code: CodeTooManyAttempts, Detail: "rate limited: too many failed sign-ins for " + user,
			Message: "too many failed sign-ins: try again after " + until.UTC().Format(time.RFC3339)}
		s.reauthRefused(ctx, user, source, e)
		return "", e
	}
	_, err = s.auth.Authenticate(ctx, Credentials{User: user, Password: password, TOTP: totp, Source: source})
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			s.release(ctx, res)
			return "", fmt.Errorf("reauthenticate: %w", err)
		}
		e = &Error{Kind: broker.KindForbidden, Code: CodeReauthFailed, Detail: e.Detail,
			Message: "re-authentication failed: wrong password or code (a code can sign once: wait for the next one)"}
		s.reauthRefused(ctx, user, source, e)
		return "", e
	}
	s.release(ctx, res)
	return MethodPasswordTOTP, nil
}

func (s *Service) reauthRefused(ctx context.Context, user, source string, e *Error) {
	if _, err := s.audit.Append(ctx, audit.Entry{Actor: user, Action: "auth.reauth", Outcome: broker.OutcomeDenied,
		Reason: e.Detail, Details: map[string]any{"source": source, "code": e.Code}}); err != nil {
		s.log.Error("audit append failed", "action", "auth.reauth", "err", err)
	}
}

func signingUnavailable(message, detail string) *Error {
	return &Error{Kind: broker.KindForbidden, Code: CodeSigningUnavailable, Message: message, Detail: detail}
}
