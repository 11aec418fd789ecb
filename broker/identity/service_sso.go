package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// SSO returns the single sign-on client, or nil when none is configured.
func (s *Service) SSO() *OIDC { return s.sso }

// CompleteSSO finishes the code flow that state names (see OIDC.Finish),
// admits the user and issues a token of kind (KindAPI for the CLI,
// KindWeb for a browser) valid for ttl (0: auth.token_ttl). Every outcome
// is audited as auth.login with method sso.
func (s *Service) CompleteSSO(ctx context.Context, purpose, state, code, kind string, ttl time.Duration, source string) (string, broker.Token, error) {
	if s.sso == nil {
		return "", broker.Token{}, errSSODisabled()
	}
	u, err := s.sso.Finish(ctx, purpose, state, code)
	if err != nil {
		return "", broker.Token{}, s.ssoRefused(ctx, u, source, err)
	}
	return s.loginSSO(ctx, u, kind, ttl, source)
}

// CompleteDevice finishes a device sign-in (see OIDC.DevicePoll) and
// issues an API token. ErrDevicePending is returned as is.
func (s *Service) CompleteDevice(ctx context.Context, handle string, wait time.Duration, source string) (string, broker.Token, error) {
	if s.sso == nil {
		return "", broker.Token{}, errSSODisabled()
	}
	u, err := s.sso.DevicePoll(ctx, handle, wait)
	if errors.Is(err, ErrDevicePending) {
		return "", broker.Token{}, err
	}
	if err != nil {
		return "", broker.Token{}, s.ssoRefused(ctx, u, source, err)
	}
	return s.loginSSO(ctx, u, KindAPI, 0, source)
}

// loginSSO admits u to the directory and issues its token. A name that is
// a local user's is refused unless identity.oidc.link_local_users lists
// it, so the provider cannot impersonate a local break-glass account.
func (s *Service) loginSSO(ctx context.Context, u SSOUser, kind string, ttl time.Duration, source string) (string, broker.Token, error) {
	linked := slices.Contains(s.sso.cfg.LinkLocalUsers, u.Name)
	// The collision check runs before anything is stored.
	if err := s.dir.checkSSOName(u.Name, linked); err != nil {
		return "", broker.Token{}, s.ssoRefused(ctx, u, source, err)
	}
	if err := s.recordSSO(ctx, u, linked); err != nil {
		return "", broker.Token{}, s.ssoRefused(ctx, u, source, err)
	}
	if err := s.dir.admitSSO(u.Identity, linked); err != nil {
		return "", broker.Token{}, s.ssoRefused(ctx, u, source, err)
	}
	if ttl <= 0 {
		ttl = s.ttl
	}
	proof := Proof{Method: MethodSSO, Time: u.AuthTime}
	if u.MFA {
		proof.Method = MethodSSOMFA
	}
	if proof.Time.IsZero() {
		proof.Time = s.now()
	}
	// Who the provider said signed in, for the record.
	who := map[string]any{"issuer": u.Issuer, "subject": u.Subject, "groups": u.Groups}
	secret, tok, err := s.tokens.issue(ctx, u.Name, kind, "", ttl, source, proof,
		audit.Entry{Actor: u.Name, Action: "auth.login", Details: who})
	if err != nil {
		return "", broker.Token{}, fmt.Errorf("sso login: %w", err)
	}
	s.log.Info("sso sign-in", "user", u.Name, "groups", u.Groups, "source", source)
	s.touch(ctx, u.Name)
	return secret, tok, nil
}

// ssoRefused audits a refused SSO sign-in and returns err. A refusal
// that is not a credential problem (the provider unreachable) is logged
// and returned wrapped.
func (s *Service) ssoRefused(ctx context.Context, u SSOUser, source string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		s.log.Error("sso sign-in failed", "source", source, "err", err)
		return fmt.Errorf("sso login: %w", err)
	}
	// The reason names the failed check (issuer, audience, nonce, state,
	// expiry, …), never a code or token: operators troubleshoot from it.
	s.log.Warn("sso sign-in refused", "user", auditName(u.Name), "source", source, "reason", e.Detail)
	details := map[string]any{"source": source, "code": e.Code, "method": MethodSSO}
	if u.Issuer != "" {
		details["issuer"], details["subject"] = u.Issuer, u.Subject
	}
	s.refused(ctx, source, audit.Entry{Actor: auditName(u.Name), Action: "auth.login", Outcome: broker.OutcomeDenied,
		Reason: e.Detail, Details: details})
	if e.Code == CodeLoginFailed {
		// The password wording would mislead; the reason stays in the audit log.
		c := *e
		c.Message = "single sign-on refused: the sign-in could not be accepted (the broker's audit log says why)"
		return &c
	}
	return e
}

// SSOName is the provider's display name, or "" without single sign-on.
func (s *Service) SSOName() string {
	if s.sso == nil {
		return ""
	}
	return s.sso.Name()
}

// BeginSSO starts a code flow (see OIDC.Begin).
func (s *Service) BeginSSO(ctx context.Context, purpose, redirect string) (authURL, state string, err error) {
	if s.sso == nil {
		return "", "", errSSODisabled()
	}
	return s.sso.Begin(ctx, purpose, redirect)
}

// StartDevice starts a device sign-in (see OIDC.DeviceStart).
func (s *Service) StartDevice(ctx context.Context) (broker.DeviceSignIn, error) {
	if s.sso == nil {
		return broker.DeviceSignIn{}, errSSODisabled()
	}
	resp, handle, err := s.sso.DeviceStart(ctx)
	if err != nil {
		return broker.DeviceSignIn{}, err
	}
	return broker.DeviceSignIn{Handle: handle, UserCode: resp.UserCode, VerificationURI: resp.VerificationURI,
		VerificationURIComplete: resp.VerificationURIComplete, ExpiresAt: resp.Expiry, Interval: int(max(resp.Interval, 1))}, nil
}

func errSSODisabled() *Error {
	return &Error{Kind: broker.KindNotFound, Code: "sso_disabled", Message: "single sign-on is not configured on this broker"}
}
