package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Authenticator signs users in and checks bearer tokens. broker/identity
// implements it; an OIDC-backed one can replace it without touching the
// handlers.
type Authenticator interface {
	// Login checks a password (and TOTP code when the user has one) and
	// issues an API token. The secret is returned once.
	Login(ctx context.Context, user, password, totp, source string) (secret string, tok broker.Token, err error)
	// VerifyToken returns the token for a secret of the given kind, or an
	// error when it is unknown, expired or revoked.
	VerifyToken(ctx context.Context, secret, kind string) (broker.Token, error)
	// ListTokens and RevokeToken manage a user's tokens.
	ListTokens(ctx context.Context, user string) ([]broker.Token, error)
	RevokeToken(ctx context.Context, id, by string) error
}

// Channels a caller reaches the API through; the server decides it from
// how the caller authenticated, never from the request body.
const (
	// ViaCLI: a bearer API token (the custos CLI and other API clients).
	ViaCLI = "cli"
	// ViaWeb: the web UI's session cookie.
	ViaWeb = "web"
)

// Cookie and header names of the web UI's sessions.
const (
	SessionCookie = "custos_session"
	CSRFHeader    = "X-CSRF-Token"
	webTokenKind  = "web"
	apiTokenKind  = "api"
)

type principalKey struct{}

// Principal is the authenticated caller of an API request.
type Principal struct {
	User  string
	Token broker.Token
	// Via is the channel: ViaCLI for a bearer token, ViaWeb for the
	// session cookie.
	Via string
	// CSRF is the token a cookie session's state changes must echo in
	// X-CSRF-Token; empty for bearer tokens.
	CSRF string
	// Security is set for security staff and auditors (security_admins).
	Security bool
}

// PrincipalFrom returns the caller set by the auth middleware.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	noteUser(ctx, p.User)
	return context.WithValue(ctx, principalKey{}, p)
}

// RequireToken wraps h so it runs only with a valid API bearer token; the
// caller is then available through PrincipalFrom. The client address is in
// the context (audit.Source) when the token is verified, so a refusal is
// audited, and throttled, per address.
func RequireToken(auth Authenticator, h http.HandlerFunc) http.Handler {
	return (&Gate{Auth: auth}).bearerOnly(h)
}

// Gate authenticates the callers of the API and the UI's websockets: a
// bearer API token, or the web UI's session cookie. A cookie session's
// state changes must come from the UI's own origin and carry the
// session's CSRF token.
type Gate struct {
	Auth Authenticator
	// IsSecurity reports whether a user is security staff or an auditor.
	// Default: nobody is.
	IsSecurity func(user string) bool
	// Origin is the broker's public origin (scheme://host), accepted on
	// state changes besides the request's own host. Default: same host
	// only.
	Origin string
}

// NewGate returns a gate; publicURL may be empty.
func NewGate(auth Authenticator, isSecurity func(string) bool, publicURL string) *Gate {
	g := &Gate{Auth: auth, IsSecurity: isSecurity}
	if pu, err := url.Parse(publicURL); publicURL != "" && err == nil && pu.Host != "" {
		g.Origin = pu.Scheme + "://" + pu.Host
	}
	return g
}

var errNoCredentials = errors.New("sign in first: custos login, or the web UI's sign-in page")

func (g *Gate) principal(tok broker.Token, via, csrf string) Principal {
	p := Principal{User: tok.User, Token: tok, Via: via, CSRF: csrf}
	if g.IsSecurity != nil {
		p.Security = g.IsSecurity(tok.User)
	}
	return p
}

// bearer checks the Authorization header; ok is false when there is none.
func (g *Gate) bearer(r *http.Request) (p Principal, ok bool, err error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return Principal{}, false, nil
	}
	if secret = strings.TrimSpace(secret); secret == "" {
		return Principal{}, true, errNoCredentials
	}
	tok, err := g.Auth.VerifyToken(audit.WithSource(r.Context(), ClientIP(r)), secret, apiTokenKind)
	if err != nil {
		return Principal{}, true, err
	}
	return g.principal(tok, ViaCLI, ""), true, nil
}

// Cookie reads and verifies the session cookie, without the checks a
// state change needs; pages use it to decide whether to redirect.
func (g *Gate) Cookie(r *http.Request) (Principal, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Principal{}, errNoCredentials
	}
	tok, err := g.Auth.VerifyToken(r.Context(), c.Value, webTokenKind)
	if err != nil {
		return Principal{}, err
	}
	return g.principal(tok, ViaWeb, csrfToken(c.Value)), nil
}

func (g *Gate) bearerOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, found, err := g.bearer(r)
		if !found {
			WriteError(w, http.StatusUnauthorized, "unauthenticated", "missing bearer token: run custos login")
			return
		}
		if err != nil {
			refuseBearer(w, err)
			return
		}
		h(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// refuseBearer answers a bearer token that did not verify: 401 with the
// refusal's code and message, or, when the token could not be checked at
// all (the store did not answer), 503 without the internal error text.
func refuseBearer(w http.ResponseWriter, err error) {
	if _, ok := broker.AsError(err); !ok {
		WriteError(w, http.StatusServiceUnavailable, "unavailable", "the broker cannot check tokens right now; try again")
		return
	}
	WriteError(w, http.StatusUnauthorized, errorCode(err, "token_invalid"), err.Error())
}

// Require wraps h so it runs only for an authenticated caller: a bearer
// API token, or else the session cookie. A cookie session's state
// changes (any method but GET and HEAD) must pass the Origin and CSRF
// checks.
func (g *Gate) Require(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, found, err := g.bearer(r)
		if found && err != nil {
			refuseBearer(w, err)
			return
		}
		if !found {
			if p, err = g.Cookie(r); err != nil {
				WriteError(w, http.StatusUnauthorized, "unauthenticated", "sign in first")
				return
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				if !g.SameOrigin(r) {
					WriteError(w, http.StatusForbidden, "bad_origin", "request from another origin refused")
					return
				}
				got := r.Header.Get(CSRFHeader)
				if got == "" || !hmac.Equal([]byte(got), []byte(p.CSRF)) {
					WriteError(w, http.StatusForbidden, "csrf", "missing or wrong CSRF token: reload the page")
					return
				}
			}
		}
		h(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// SameOrigin reports whether a browser request comes from the UI's own
// origin: its Origin header (or, without one, Sec-Fetch-Site) must name
// this host or the configured public URL.
func (g *Gate) SameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		return site == "" || site == "same-origin" || site == "none"
	}
	if g.Origin != "" && o == g.Origin {
		return true
	}
	ou, err := url.Parse(o)
	return err == nil && ou.Host != "" && strings.EqualFold(ou.Host, r.Host)
}

// csrfToken derives the CSRF token from the session secret: the page reads
// it from /api/v1/whoami (the cookie itself is HttpOnly) and every replica
// of the broker can check it without shared state.
func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("custos web csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// coder is implemented by errors that carry a machine-readable code.
type coder interface{ ErrorCode() string }

func errorCode(err error, def string) string {
	var c coder
	if errors.As(err, &c) && c.ErrorCode() != "" {
		return c.ErrorCode()
	}
	return def
}

// withSource puts every request's client address in its context
// (audit.Source), for audit records of refusals deep in a call.
func withSource(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(audit.WithSource(r.Context(), ClientIP(r))))
	})
}

// ClientIP is the request's source address without port.
func ClientIP(r *http.Request) string { return audit.SourceAddr(r.RemoteAddr) }
