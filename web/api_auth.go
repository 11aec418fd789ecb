package web

import (
	"context"
	"net/http"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/policy"
)

type loginBody struct {
	User     string `json:"user"`
	Password string `json:"password"`
	TOTP     string `json:"totp,omitempty"`
}

// loginFailed answers a refused sign-in: 429 when rate-limited, else 401.
func loginFailed(w http.ResponseWriter, err error) {
	code, status := errorCode(err, "login_failed"), http.StatusUnauthorized
	if code == "too_many_attempts" {
		status = http.StatusTooManyRequests
	}
	WriteError(w, status, code, err.Error())
}

// login issues an API bearer token (custos login).
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var in loginBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	secret, tok, err := a.o.Auth.Login(r.Context(), in.User, in.Password, in.TOTP, ClientIP(r))
	if err != nil {
		loginFailed(w, err)
		return
	}
	writeLogin(w, secret, tok)
}

// signIn checks the credentials exactly as login does (same rate limits,
// second factor and audit), then exchanges the API token it issues for a
// browser session token in an HttpOnly, Secure, SameSite=Strict cookie.
func (a *API) signIn(w http.ResponseWriter, r *http.Request) {
	if !a.gate.SameOrigin(r) {
		WriteError(w, http.StatusForbidden, "bad_origin", "sign-in from another origin refused")
		return
	}
	if a.o.Tokens == nil {
		unavailable(w, "no_web_sessions", "web sign-in is not available on this broker")
		return
	}
	var in loginBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	source := ClientIP(r)
	_, apiTok, err := a.o.Auth.Login(r.Context(), in.User, in.Password, in.TOTP, source)
	if err != nil {
		loginFailed(w, err)
		return
	}
	// The browser never holds an API token.
	if err := a.o.Auth.RevokeToken(r.Context(), apiTok.ID, apiTok.User); err != nil {
		a.log.Warn("api: revoke sign-in api token", "user", apiTok.User, "err", err)
	}
	secret, tok, err := a.o.Tokens.IssueProven(r.Context(), apiTok.User, webTokenKind, "", a.o.SessionTTL, source,
		apiTok.AuthMethod, apiTok.AuthTime)
	if err != nil {
		a.Fail(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", HttpOnly: true,
		Secure: !a.o.InsecureCookies, SameSite: http.SameSiteStrictMode, Expires: tok.ExpiresAt,
		MaxAge: int(a.o.SessionTTL.Seconds())})
	WriteJSON(w, http.StatusOK, map[string]any{"user": tok.User, "csrf": csrfToken(secret),
		"admin": a.o.Access.IsSecurityAdmin(tok.User), "expires_at": tok.ExpiresAt})
}

// signOut revokes the caller's token (the session's, for the web UI) and
// clears the cookie.
func (a *API) signOut(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if err := a.o.Auth.RevokeToken(r.Context(), p.Token.ID, p.User); err != nil {
		a.log.Warn("api: revoke session token", "user", p.User, "err", err)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true,
		Secure: !a.o.InsecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	WriteJSON(w, http.StatusOK, map[string]bool{"signed_out": true})
}

// whoami describes the caller and what this broker offers them; the web
// UI reads its CSRF token here.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	out := map[string]any{"user": p.User, "token_id": p.Token.ID, "expires_at": p.Token.ExpiresAt, "via": p.Via,
		"security_admin": p.Security, "admin": p.Security, "live": a.o.Live != nil, "terminate": a.o.Terminator != nil,
		"breakglass": a.mayBreakGlass(r.Context(), p), "reviews": a.mayReview(r.Context(), p.User), "auth_method": p.Token.AuthMethod, "created_at": p.Token.CreatedAt}
	if !p.Token.AuthTime.IsZero() {
		out["auth_time"] = p.Token.AuthTime
	}
	if p.Token.Audience != "" {
		out["audience"] = p.Token.Audience
	}
	if g := a.o.Access.GroupsOf(p.User); g != nil {
		out["groups"] = g
	}
	if p.CSRF != "" {
		out["csrf"] = p.CSRF
	}
	WriteJSON(w, http.StatusOK, out)
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := a.o.Auth.ListTokens(r.Context(), principal(r).User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	if toks == nil {
		toks = []broker.Token{}
	}
	WriteJSON(w, http.StatusOK, toks)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	if err := a.o.Auth.RevokeToken(r.Context(), r.PathValue("id"), principal(r).User); err != nil {
		WriteError(w, http.StatusNotFound, errorCode(err, "not_found"), err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"revoked": r.PathValue("id")})
}

type roleView struct {
	Name        string `json:"name"`
	MaxDuration string `json:"max_duration,omitempty"`
	Approvals   int    `json:"approvals"`
	Reason      bool   `json:"reason_required"`
	Ticket      bool   `json:"ticket_required"`
	// StepUp is the role's step_up: what approvers must confirm with.
	StepUp string `json:"step_up,omitempty"`
}

type targetView struct {
	Name        string     `json:"name"`
	Kind        string     `json:"kind"`
	Description string     `json:"description,omitempty"`
	Roles       []roleView `json:"roles"`
}

// targets lists the targets and roles the caller may request, for the
// request form and custos targets; a target none of whose roles the
// caller may request is left out.
func (a *API) targets(w http.ResponseWriter, r *http.Request) {
	user := principal(r).User
	out := []targetView{}
	for _, t := range a.current().Targets {
		tv := targetView{Name: t.Name, Kind: t.Kind, Description: t.Description, Roles: []roleView{}}
		for _, role := range t.Roles {
			if !a.o.Access.MayRequest(user, t.Name, role.Name) {
				continue
			}
			rv := roleView{Name: role.Name, Approvals: role.Policy.Approvals, Reason: role.Policy.RequireReason,
				Ticket: role.Policy.RequireTicket, MaxDuration: policy.MaxDuration(role.Policy).String(), StepUp: role.Policy.StepUp}
			tv.Roles = append(tv.Roles, rv)
		}
		if len(tv.Roles) > 0 {
			out = append(out, tv)
		}
	}
	WriteJSON(w, http.StatusOK, out)
}

// mayBreakGlass reports whether the break-glass page has anything for the
// caller: security admins, and custodians of at least one account.
func (a *API) mayBreakGlass(ctx context.Context, p Principal) bool {
	if !a.breakGlassEnabled() {
		return false
	}
	if p.Security {
		return true
	}
	accts, err := a.o.BreakGlass.List(ctx, p.User)
	return err == nil && len(accts) > 0
}
