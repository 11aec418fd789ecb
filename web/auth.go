package web

import (
	"context"
	"net"
	"net/http"
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

type principalKey struct{}

// Principal is the authenticated caller of an API request.
type Principal struct {
	User  string
	Token broker.Token
}

// PrincipalFrom returns the caller set by the auth middleware.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// RequireToken wraps h so it runs only with a valid API bearer token; the
// caller is then available through PrincipalFrom. The client address is in
// the context (audit.Source) when the token is verified, so a refusal is
// audited, and throttled, per address.
func RequireToken(auth Authenticator, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || secret == "" {
			WriteError(w, http.StatusUnauthorized, "unauthenticated", "missing bearer token: run custos login")
			return
		}
		tok, err := auth.VerifyToken(audit.WithSource(r.Context(), ClientIP(r)), strings.TrimSpace(secret), "api")
		if err != nil {
			code, msg := errorCode(err, "token_invalid"), err.Error()
			WriteError(w, http.StatusUnauthorized, code, msg)
			return
		}
		ctx := context.WithValue(r.Context(), principalKey{}, Principal{User: tok.User, Token: tok})
		h(w, r.WithContext(ctx))
	})
}

// coder is implemented by errors that carry a machine-readable code.
type coder interface{ ErrorCode() string }

func errorCode(err error, def string) string {
	if c, ok := err.(coder); ok && c.ErrorCode() != "" {
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
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
