package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Reauthenticate checks a signed-in user's password (and TOTP code, when
// the user has a second factor) again, for a step that must be signed
// (an attestation), and returns how they proved it: MethodPassword or
// MethodPasswordTOTP. It issues no token. Each attempt counts against the
// same sign-in limiter as Login (per user and per source address), so
// guesses made here and at sign-in share one budget of
// auth.max_failures per auth.failure_window. A refusal is audited as
// auth.reauth with purpose; the password or code never is.
func (s *Service) Reauthenticate(ctx context.Context, user, password, totp, source, purpose string) (string, error) {
	keys := []string{"user:" + user}
	if source != "" {
		keys = append(keys, "addr:"+source)
	}
	res, _, until, ok, err := s.limiter.Reserve(ctx, keys...)
	if err != nil {
		return "", fmt.Errorf("reauthenticate: %w", err)
	}
	entry := audit.Entry{Actor: auditName(user), Action: "auth.reauth", Outcome: broker.OutcomeDenied,
		Details: map[string]any{"source": source, "purpose": purpose}}
	if !ok {
		e := refusal(CodeTooManyAttempts, "too many failed sign-ins: try again after "+until.UTC().Format("2006-01-02T15:04:05Z07:00"),
			"rate limited: too many failed sign-ins for user "+user)
		entry.Reason = e.Detail
		entry.Details.(map[string]any)["code"] = e.Code
		s.refused(ctx, source, entry)
		return "", e
	}
	id, err := s.auth.Authenticate(ctx, Credentials{User: user, Password: password, TOTP: totp, Source: source})
	if err == nil && id.Name != user {
		err = loginFailed("credentials of another user")
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			s.release(ctx, res)
			return "", fmt.Errorf("reauthenticate: %w", err)
		}
		// The reservation stays: it is the failure.
		entry.Reason = e.Detail
		entry.Details.(map[string]any)["code"] = e.Code
		if _, aerr := s.audit.Append(context.WithoutCancel(ctx), entry); aerr != nil {
			s.log.Error("audit append failed", "action", "auth.reauth", "err", aerr)
		}
		return "", e
	}
	s.release(ctx, res)
	if err := s.limiter.Reset(context.WithoutCancel(ctx), "user:"+user); err != nil {
		s.log.Error("sign-in failures not reset", "err", err)
	}
	if s.dir.now().hasTOTP(user) {
		return MethodPasswordTOTP, nil
	}
	return MethodPassword, nil
}
