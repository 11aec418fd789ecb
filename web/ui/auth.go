package webui

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
	"github.com/custos-pam/custos/web"
)

// Cookie and header names.
const (
	sessionCookie = "custos_session"
	csrfHeader    = "X-CSRF-Token"
	webTokenKind  = "web"
)

// principal is the signed-in user of a request.
type principal struct {
	User  string
	Token broker.Token
	// CSRF is the token state changes must echo in X-CSRF-Token.
	CSRF  string
	Admin bool
}

type principalKey struct{}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

var errNoSession = errors.New("not signed in")

// principal reads and verifies the session cookie.
func (u *UI) principal(r *http.Request) (principal, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return principal{}, errNoSession
	}
	tok, err := u.o.Auth.VerifyToken(r.Context(), c.Value, webTokenKind)
	if err != nil {
		return principal{}, err
	}
	return principal{User: tok.User, Token: tok, CSRF: csrfToken(c.Value),
		Admin: u.o.Access.IsSecurityAdmin(tok.User)}, nil
}

// csrfToken derives the CSRF token from the session secret: the page reads
// it from /ui/api/me (the cookie itself is HttpOnly) and every replica of
// the broker can check it without shared state.
func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("custos web csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sameOrigin reports whether a browser request comes from the UI's own
// origin: its Origin header (or, without one, Sec-Fetch-Site) must name
// this host or the configured public URL.
func (u *UI) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		return site == "" || site == "same-origin" || site == "none"
	}
	if u.origin != "" && o == u.origin {
		return true
	}
	ou, err := url.Parse(o)
	return err == nil && ou.Host != "" && strings.EqualFold(ou.Host, r.Host)
}

// user wraps h so it runs only for a signed-in user. State changes must
// come from the UI's origin and carry the session's CSRF token.
func (u *UI) user(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := u.principal(r)
		if err != nil {
			web.WriteError(w, http.StatusUnauthorized, "unauthenticated", "sign in first")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !u.sameOrigin(r) {
				web.WriteError(w, http.StatusForbidden, "bad_origin", "request from another origin refused")
				return
			}
			got := r.Header.Get(csrfHeader)
			if got == "" || !hmac.Equal([]byte(got), []byte(p.CSRF)) {
				web.WriteError(w, http.StatusForbidden, "csrf", "missing or wrong CSRF token: reload the page")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// admin wraps h so only security admins (security staff and auditors)
// reach it.
func (u *UI) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !principalFrom(r.Context()).Admin {
			web.WriteError(w, http.StatusForbidden, "forbidden", "this page is for security staff and auditors")
			return
		}
		h(w, r)
	}
}

type loginBody struct {
	User     string `json:"user"`
	Password string `json:"password"`
	TOTP     string `json:"totp,omitempty"`
}

// login checks the credentials exactly as the CLI's sign-in does (same
// rate limits, second factor and audit), then exchanges the API token it
// issues for a browser session token in an HttpOnly, Secure, SameSite=Strict
// cookie.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	if !u.sameOrigin(r) {
		web.WriteError(w, http.StatusForbidden, "bad_origin", "sign-in from another origin refused")
		return
	}
	var in loginBody
	if err := web.DecodeJSON(r, &in); err != nil {
		web.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	source := web.ClientIP(r)
	_, apiTok, err := u.o.Auth.Login(r.Context(), in.User, in.Password, in.TOTP, source)
	if err != nil {
		code, status := "login_failed", http.StatusUnauthorized
		var c interface{ ErrorCode() string }
		if errors.As(err, &c) && c.ErrorCode() != "" {
			code = c.ErrorCode()
		}
		if code == "too_many_attempts" {
			status = http.StatusTooManyRequests
		}
		web.WriteError(w, status, code, err.Error())
		return
	}
	// The browser never holds an API token.
	if err := u.o.Auth.RevokeToken(r.Context(), apiTok.ID, apiTok.User); err != nil {
		u.log.Warn("webui: revoke sign-in api token", "user", apiTok.User, "err", err)
	}
	secret, tok, err := u.o.Tokens.Issue(r.Context(), apiTok.User, webTokenKind, "", u.o.SessionTTL, source)
	if err != nil {
		u.fail(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: secret, Path: "/", HttpOnly: true,
		Secure: !u.o.InsecureCookies, SameSite: http.SameSiteStrictMode, Expires: tok.ExpiresAt,
		MaxAge: int(u.o.SessionTTL.Seconds())})
	web.WriteJSON(w, http.StatusOK, map[string]any{"user": tok.User, "csrf": csrfToken(secret),
		"admin": u.o.Access.IsSecurityAdmin(tok.User), "expires_at": tok.ExpiresAt})
}

// logout revokes the session token and clears the cookie.
func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	if err := u.o.Auth.RevokeToken(r.Context(), p.Token.ID, p.User); err != nil {
		u.log.Warn("webui: revoke session token", "user", p.User, "err", err)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		Secure: !u.o.InsecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	web.WriteJSON(w, http.StatusOK, map[string]bool{"signed_out": true})
}

func (u *UI) me(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	web.WriteJSON(w, http.StatusOK, map[string]any{"user": p.User, "csrf": p.CSRF, "admin": p.Admin,
		"expires_at": p.Token.ExpiresAt, "live": u.o.Live != nil, "terminate": u.o.Terminator != nil,
		"breakglass": u.mayBreakGlass(r.Context(), p)})
}
