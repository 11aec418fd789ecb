package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// maxAuditedName bounds the attempted user name written to the audit log,
// so junk sign-in attempts cannot bloat it.
const maxAuditedName = 128

// Service signs users in: it rate-limits attempts, asks the Authenticator,
// audits every outcome and issues API tokens. It implements the web
// package's Authenticator interface.
type Service struct {
	dir     *Directory
	auth    Authenticator
	tokens  *Tokens
	limiter *Limiter
	audit   auditLog
	ttl     time.Duration
	log     *slog.Logger
}

// Options configure a Service. Zero fields take the documented defaults.
type Options struct {
	// Auth holds token lifetimes and rate limits.
	Auth config.Auth
	// Directory is the user directory. Required.
	Directory *Directory
	// Store holds tokens and TOTP replay state. Required.
	Store broker.Store
	// Audit receives every sign-in, issue and revocation. Required.
	Audit *audit.Log
	// Authenticator checks credentials. Default: a PasswordAuthenticator
	// over Directory with a StoreStepGuard over Store.
	Authenticator Authenticator
	// Now defaults to time.Now; tests inject a clock.
	Now func() time.Time
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// NewService returns a Service.
func NewService(o Options) (*Service, error) {
	if o.Directory == nil || o.Store == nil || o.Audit == nil {
		return nil, errors.New("identity: directory, store and audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Authenticator == nil {
		o.Authenticator = NewPasswordAuthenticator(o.Directory, StoreStepGuard{Store: o.Store}, o.Now)
	}
	ttl := o.Auth.TokenTTL.D()
	if ttl <= 0 {
		ttl = 8 * time.Hour
	}
	return &Service{
		dir: o.Directory, auth: o.Authenticator, tokens: NewTokens(o.Store, o.Audit, o.Now),
		limiter: NewLimiter(o.Auth.MaxFailures, o.Auth.FailureWindow.D(), o.Now),
		audit:   o.Audit, ttl: ttl, log: o.Log,
	}, nil
}

// Directory returns the user directory.
func (s *Service) Directory() *Directory { return s.dir }

// Tokens returns the token service, for issuing web and db tokens.
func (s *Service) Tokens() *Tokens { return s.tokens }

// Login checks the credentials and issues an API token valid for
// auth.token_ttl. Attempts for a user name or from a source address that
// failed auth.max_failures times within auth.failure_window are refused
// with too_many_attempts before the credentials are looked at. Every
// outcome is audited as auth.login with the attempted user name as actor;
// the audit reason says what was wrong, never the password or code.
func (s *Service) Login(ctx context.Context, user, password, totp, source string) (string, broker.Token, error) {
	// Without a source address only the user name is limited: one shared
	// empty key would let anyone lock everyone out.
	keys := []string{"user:" + user}
	addrKey := "addr:" + source
	if source != "" {
		keys = append(keys, addrKey)
	}
	if key, until, blocked := s.limiter.Blocked(keys...); blocked {
		what := "user " + user
		if key == addrKey {
			what = "address " + source
		}
		e := &Error{Code: CodeTooManyAttempts, Reason: "rate limited: too many failed sign-ins for " + what,
			Message: "too many failed sign-ins: try again after " + until.UTC().Format(time.RFC3339)}
		return "", broker.Token{}, s.loginRefused(ctx, user, source, e)
	}
	id, err := s.auth.Authenticate(ctx, Credentials{User: user, Password: password, TOTP: totp, Source: source})
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			s.log.Error("sign-in failed", "user", auditName(user), "source", source, "err", err)
			return "", broker.Token{}, fmt.Errorf("login: %w", err)
		}
		s.limiter.Fail(keys...)
		return "", broker.Token{}, s.loginRefused(ctx, user, source, e)
	}
	s.limiter.Reset("user:" + id.Name)
	secret, tok, err := s.tokens.issue(ctx, id.Name, KindAPI, "", s.ttl, source, audit.Entry{Actor: id.Name, Action: "auth.login"})
	if err != nil {
		return "", broker.Token{}, fmt.Errorf("login: %w", err)
	}
	return secret, tok, nil
}

// loginRefused audits a refused sign-in and returns e.
func (s *Service) loginRefused(ctx context.Context, user, source string, e *Error) error {
	if _, err := s.audit.Append(ctx, audit.Entry{Actor: auditName(user), Action: "auth.login", Outcome: broker.OutcomeDenied,
		Reason: e.Reason, Details: map[string]any{"source": source, "code": e.Code}}); err != nil {
		// A sign-in that cannot be audited is refused all the same.
		s.log.Error("audit append failed", "action", "auth.login", "err", err)
	}
	return e
}

// auditName is the attempted user name as written to the audit log.
func auditName(user string) string {
	switch {
	case user == "":
		return "anonymous"
	case len(user) > maxAuditedName:
		return strings.ToValidUTF8(user[:maxAuditedName], "") + "…"
	default:
		return user
	}
}

// VerifyToken returns the token for a secret of the given kind. A refused
// token (unknown, revoked, expired or of another kind) is audited with its
// precise reason; the secret never is.
func (s *Service) VerifyToken(ctx context.Context, secret, kind string) (broker.Token, error) {
	tok, err := s.tokens.Verify(ctx, secret, kind)
	var e *Error
	if errors.As(err, &e) {
		if _, aerr := s.audit.Append(ctx, audit.Entry{Actor: "anonymous", Action: "auth.token", Outcome: broker.OutcomeDenied,
			Reason: e.Reason, Details: map[string]any{"code": e.Code, "kind": kind}}); aerr != nil {
			s.log.Error("audit refused token", "err", aerr)
		}
	}
	return tok, err
}

// ListTokens returns the user's tokens.
func (s *Service) ListTokens(ctx context.Context, user string) ([]broker.Token, error) {
	return s.tokens.List(ctx, user)
}

// RevokeToken revokes a token owned by by; security admins may revoke
// anyone's.
func (s *Service) RevokeToken(ctx context.Context, id, by string) error {
	return s.tokens.revoke(ctx, id, by, s.dir.IsSecurityAdmin(by))
}
