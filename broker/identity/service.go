package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// maxAuditedName bounds the attempted user name written to the audit log,
// so junk sign-in attempts cannot bloat it.
const maxAuditedName = 128

// Token purge defaults.
const (
	DefaultTokenRetention = 7 * 24 * time.Hour
	DefaultPurgeEvery     = time.Hour
)

// rejectionLog audits refusals of callers nobody has authenticated yet,
// bounding how many records they produce; *audit.Throttle implements it.
type rejectionLog interface {
	Record(ctx context.Context, source string, e audit.Entry) error
}

// Service signs users in: it rate-limits attempts, asks the Authenticator,
// audits every outcome and issues API tokens. It implements the web
// package's Authenticator interface.
type Service struct {
	dir        *Directory
	auth       Authenticator
	tokens     *Tokens
	limiter    *SharedLimiter
	store      broker.Store
	audit      auditLog
	rejections rejectionLog   // nil: every refusal is its own record
	sso        *OIDC          // nil: no single sign-on
	accessLoss AccessLoss     // nil: SCIM losses revoke tokens only
	passkeys   PasskeyHolders // nil: Factors lists no passkeys
	// scimVersion is the SCIM state the directory has (scim_store.go).
	scimMu      sync.Mutex
	scimVersion int64
	// seen is when this replica last recorded each user's activity.
	seenMu sync.Mutex
	seen   map[string]time.Time
	// ssoLoaded is when the stored SSO users were last read (UnixNano).
	ssoLoaded  atomic.Int64
	ttl        time.Duration
	retention  time.Duration
	purgeEvery time.Duration
	now        func() time.Time
	log        *slog.Logger
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
	// Rejections, when set, audits the refusals anyone can provoke
	// without credentials (bearer tokens refused by VerifyToken, sign-ins
	// refused by the rate limiter): the first few per source address and
	// window are records of their own, the rest are counted into one
	// summary record. Default: nil, every refusal is its own record.
	Rejections *audit.Throttle
	// TokenRetention is how long an expired token stays in the store (and
	// in the token list) before Run deletes it. Default 7 days.
	TokenRetention time.Duration
	// PurgeEvery is how often Run deletes such tokens. Default 1 hour.
	PurgeEvery time.Duration
	// Authenticator checks credentials. Default: a PasswordAuthenticator
	// over Directory with a StoreStepGuard over Store.
	Authenticator Authenticator
	// SSO, when set, signs users in with an OpenID Provider besides
	// Authenticator. Default: nil, no single sign-on.
	SSO *OIDC
	// Audience binds every token this service issues to one broker (its
	// public URL); tokens bound to another audience are refused. Default:
	// empty, tokens are unbound.
	Audience string
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
		pa := NewPasswordAuthenticator(o.Directory, StoreStepGuard{Store: o.Store}, o.Now)
		pa.enrolled = StoreTOTP{Store: o.Store}
		o.Authenticator = pa
	}
	ttl := o.Auth.TokenTTL.D()
	if ttl <= 0 {
		ttl = 8 * time.Hour
	}
	if o.TokenRetention <= 0 {
		o.TokenRetention = DefaultTokenRetention
	}
	if o.PurgeEvery <= 0 {
		o.PurgeEvery = DefaultPurgeEvery
	}
	tokens := NewTokens(o.Store, o.Audit, o.Now)
	tokens.audience = o.Audience
	s := &Service{
		dir: o.Directory, auth: o.Authenticator, tokens: tokens,
		limiter: NewSharedLimiter(o.Store, "signin", o.Auth.MaxFailures, o.Auth.FailureWindow.D(), o.Now),
		seen:    map[string]time.Time{},
		store:   o.Store, audit: o.Audit, ttl: ttl, retention: o.TokenRetention, purgeEvery: o.PurgeEvery, now: o.Now, log: o.Log,
	}
	if o.Rejections != nil {
		s.rejections = o.Rejections
	}
	s.sso = o.SSO
	if s.sso != nil {
		s.sso.useStore(o.Store)
	}
	tokens.enabled = s.enabled
	return s, nil
}

// Directory returns the user directory.
func (s *Service) Directory() *Directory { return s.dir }

// Tokens returns the token service, for issuing web and db tokens.
func (s *Service) Tokens() *Tokens { return s.tokens }

// Login checks the credentials and issues an API token valid for
// auth.token_ttl. Attempts for a user name or from a source address that
// failed auth.max_failures times within auth.failure_window are refused
// with too_many_attempts before the credentials are looked at. Each
// attempt is counted as failed before its credentials are checked and
// given back when they were right, so at most auth.max_failures
// passwords (and TOTP codes) are ever checked per user and per address
// and window, however many attempts run in parallel. The counts are in
// the state store, so they hold across every broker sharing it and
// survive a restart. Every
// outcome is audited as auth.login with the attempted user name as actor;
// the audit reason says what was wrong, never the password or code.
// Attempts refused by the rate limiter go through Options.Rejections, so
// hammering a blocked key cannot flood the audit log.
func (s *Service) Login(ctx context.Context, user, password, totp, source string) (string, broker.Token, error) {
	// Without a source address only the user name is limited: one shared
	// empty key would let anyone lock everyone out.
	keys := []string{"user:" + user}
	addrKey := "addr:" + source
	if source != "" {
		keys = append(keys, addrKey)
	}
	// The attempt is counted before the credentials are checked, so
	// parallel guesses cannot all pass the limit before one of them fails.
	res, key, until, ok, err := s.limiter.Reserve(ctx, keys...)
	if err != nil {
		return "", broker.Token{}, fmt.Errorf("login: %w", err)
	}
	if !ok {
		what := "user " + user
		if key == addrKey {
			what = "address " + source
		}
		e := &Error{Kind: broker.KindRateLimited, Code: CodeTooManyAttempts, Detail: "rate limited: too many failed sign-ins for " + what,
			Message: "too many failed sign-ins: try again after " + until.UTC().Format(time.RFC3339)}
		return "", broker.Token{}, s.loginRefused(ctx, user, source, e, true)
	}
	id, err := s.auth.Authenticate(ctx, Credentials{User: user, Password: password, TOTP: totp, Source: source})
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			// Not a wrong credential (the context ended, the store
			// failed): the attempt is given back.
			s.release(ctx, res)
			s.log.Error("sign-in failed", "user", auditName(user), "source", source, "err", err)
			return "", broker.Token{}, fmt.Errorf("login: %w", err)
		}
		// The reservation stays: it is the failure.
		return "", broker.Token{}, s.loginRefused(ctx, user, source, e, false)
	}
	s.release(ctx, res)
	if err := s.limiter.Reset(context.WithoutCancel(ctx), "user:"+id.Name); err != nil {
		s.log.Error("sign-in failures not reset", "err", err)
	}
	proof := Proof{Method: MethodPassword, Time: s.now()}
	if enrolled, _ := (StoreTOTP{Store: s.store}).Enrolled(ctx, id.Name); enrolled || s.dir.now().hasTOTP(id.Name) {
		proof.Method = MethodPasswordTOTP
	}
	secret, tok, err := s.tokens.issue(ctx, id.Name, KindAPI, "", s.ttl, source, proof, audit.Entry{Actor: id.Name, Action: "auth.login"})
	if err != nil {
		return "", broker.Token{}, fmt.Errorf("login: %w", err)
	}
	s.touch(ctx, id.Name)
	return secret, tok, nil
}

// release gives a reserved sign-in attempt back; a release the store
// does not take leaves the attempt counted, erring on the side of the
// limit.
func (s *Service) release(ctx context.Context, res *SharedReservation) {
	if err := res.Release(context.WithoutCancel(ctx)); err != nil {
		s.log.Error("sign-in attempt not given back", "err", err)
	}
}

// loginRefused audits a refused sign-in and returns e. A sign-in refused
// by the rate limiter (limited) is audited through the throttle; a wrong
// credential always has a record of its own, and the limiter bounds how
// many there can be.
func (s *Service) loginRefused(ctx context.Context, user, source string, e *Error, limited bool) error {
	entry := audit.Entry{Actor: auditName(user), Action: "auth.login", Outcome: broker.OutcomeDenied,
		Reason: e.Detail, Details: map[string]any{"source": source, "code": e.Code}}
	// A sign-in that cannot be audited is refused all the same.
	if limited {
		s.refused(ctx, source, entry)
	} else if _, err := s.audit.Append(ctx, entry); err != nil {
		s.log.Error("audit append failed", "action", "auth.login", "err", err)
	}
	return e
}

// refused audits a refusal of an unauthenticated caller through the
// throttle, or as a record of its own without one.
func (s *Service) refused(ctx context.Context, source string, e audit.Entry) {
	var err error
	if s.rejections != nil {
		err = s.rejections.Record(ctx, source, e)
	} else {
		_, err = s.audit.Append(ctx, e)
	}
	if err != nil {
		s.log.Error("audit append failed", "action", e.Action, "err", err)
	}
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
// token (unknown, revoked, expired or of another kind) is audited as
// auth.token with its precise reason and the client address audit.Source
// finds in ctx, through Options.Rejections; the secret never is.
func (s *Service) VerifyToken(ctx context.Context, secret, kind string) (broker.Token, error) {
	tok, err := s.tokens.Verify(ctx, secret, kind)
	if err == nil {
		s.touch(ctx, tok.User)
	}
	var e *Error
	if errors.As(err, &e) {
		source := audit.Source(ctx)
		s.refused(ctx, source, audit.Entry{Actor: "anonymous", Action: "auth.token", Outcome: broker.OutcomeDenied,
			Reason: e.Detail, Details: map[string]any{"code": e.Code, "kind": kind, "source": source}})
	}
	return tok, err
}

// Run deletes the tokens that expired more than Options.TokenRetention
// ago, at once and then every Options.PurgeEvery, until ctx ends. Each run
// that deletes any appends one token.purge record with the count.
func (s *Service) Run(ctx context.Context) {
	tk := time.NewTicker(s.purgeEvery)
	defer tk.Stop()
	// With single sign-on, the SSO users are re-read as well (sso_store.go).
	var refresh <-chan time.Time
	if s.sso != nil {
		rt := time.NewTicker(ssoRefreshEvery)
		defer rt.Stop()
		refresh = rt.C
	}
	// SCIM users changed through other replicas (scim_store.go).
	scimTick := time.NewTicker(scimRefreshEvery)
	defer scimTick.Stop()
	for {
		if n, err := s.tokens.PurgeExpired(ctx, s.now().Add(-s.retention)); err != nil {
			if ctx.Err() == nil {
				s.log.Error("token purge failed", "err", err)
			}
		} else if n > 0 {
			s.log.Info("expired tokens purged", "deleted", n, "retention", s.retention.String())
		}
		// Rate-limit state (sign-in failures, audit throttle tallies)
		// is deleted once it no longer counts.
		if _, err := PurgeExpiredLimits(ctx, s.store, s.now()); err != nil && ctx.Err() == nil {
			s.log.Error("rate-limit state purge failed", "err", err)
		}
		for purge := false; !purge; {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				purge = true
			case <-refresh:
				if _, err := s.LoadSSOUsers(ctx); err != nil && ctx.Err() == nil {
					s.log.Error("refresh sso users", "err", err)
				}
			case <-scimTick.C:
				if err := s.LoadSCIM(ctx); err != nil && ctx.Err() == nil {
					s.log.Error("refresh scim users", "err", err)
				}
			}
		}
	}
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
