package web

import (
	"context"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
)

// singleSignOn signs users in with the OpenID Provider; identity.Service
// implements it. Purposes are "web" and "cli" (identity.PurposeWeb/CLI).
type singleSignOn interface {
	// SSOName is the provider's display name, "" when SSO is off.
	SSOName() string
	BeginSSO(ctx context.Context, purpose, redirect string) (authURL, state string, err error)
	CompleteSSO(ctx context.Context, purpose, state, code, kind string, ttl time.Duration, source string) (string, broker.Token, error)
	StartDevice(ctx context.Context) (broker.DeviceSignIn, error)
	CompleteDevice(ctx context.Context, handle string, wait time.Duration, source string) (string, broker.Token, error)
}

// codePending is the error code with which CompleteDevice says the user
// has not approved the device yet.
const codePending = "authorization_pending"

// ssoStateCookie binds a web sign-in's state to the browser that began
// it, so a code cannot be injected into another browser (login CSRF).
// SameSite=Lax: it must come back on the provider's top-level redirect.
const ssoStateCookie = "custos_sso_state"

// devicePollWait is how long one device poll waits for the user.
const devicePollWait = 20 * time.Second

func (a *API) sso() singleSignOn {
	if a.o.SSO == nil || a.o.SSO.SSOName() == "" {
		return nil
	}
	return a.o.SSO
}

// ssoInfo tells the login page and the CLI whether SSO is offered.
func (a *API) ssoInfo(w http.ResponseWriter, r *http.Request) {
	s := a.sso()
	if s == nil {
		WriteJSON(w, http.StatusOK, map[string]any{"enabled": false})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"enabled": true, "name": s.SSOName(), "login_url": "/auth/oidc/login"})
}

// ssoLogin starts a browser sign-in: it remembers the state in a cookie
// and sends the browser to the provider.
func (a *API) ssoLogin(w http.ResponseWriter, r *http.Request) {
	s := a.sso()
	if s == nil {
		WriteError(w, http.StatusNotFound, "sso_disabled", "single sign-on is not configured on this broker")
		return
	}
	authURL, state, err := s.BeginSSO(r.Context(), "web", "")
	if err != nil {
		a.Fail(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ssoStateCookie, Value: state, Path: "/auth/oidc/", HttpOnly: true,
		Secure: !a.o.InsecureCookies, SameSite: http.SameSiteLaxMode, MaxAge: 600})
	http.Redirect(w, r, authURL, http.StatusFound)
}

var ssoDonePage = template.Must(template.New("sso").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Custos sign-in</title>
{{if .OK}}<meta http-equiv="refresh" content="0;url=/ui/sessions">{{end}}</head>
<body><main><h1>{{if .OK}}Signed in{{else}}Single sign-on failed{{end}}</h1><p>{{.Message}}</p>
<p><a href="{{if .OK}}/ui/sessions{{else}}/ui/login{{end}}">Continue</a></p></main></body></html>`))

// ssoCallback completes a browser sign-in: the state must be the one this
// browser began with; the session cookie is set as password sign-in sets
// it. The answer is a page that moves on to the UI from the broker's own
// origin, so the SameSite=Strict session cookie is sent from then on.
func (a *API) ssoCallback(w http.ResponseWriter, r *http.Request) {
	s := a.sso()
	if s == nil {
		WriteError(w, http.StatusNotFound, "sso_disabled", "single sign-on is not configured on this broker")
		return
	}
	done := func(status int, ok bool, msg string) {
		http.SetCookie(w, &http.Cookie{Name: ssoStateCookie, Value: "", Path: "/auth/oidc/", HttpOnly: true,
			Secure: !a.o.InsecureCookies, SameSite: http.SameSiteLaxMode, MaxAge: -1})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = ssoDonePage.Execute(w, map[string]any{"OK": ok, "Message": msg})
	}
	q := r.URL.Query()
	state := q.Get("state")
	if e := q.Get("error"); e != "" {
		// Consume the flow, so its state cannot be used later.
		_, _, _ = s.CompleteSSO(r.Context(), "web", state, "", "web", a.o.SessionTTL, ClientIP(r))
		done(http.StatusUnauthorized, false, "the identity provider refused the sign-in ("+sanitizeCode(e)+")")
		return
	}
	c, err := r.Cookie(ssoStateCookie)
	if err != nil || c.Value == "" || c.Value != state {
		done(http.StatusBadRequest, false, "this sign-in was not started in this browser, or it took too long: start again")
		return
	}
	secret, tok, err := s.CompleteSSO(r.Context(), "web", state, q.Get("code"), webTokenKind, a.o.SessionTTL, ClientIP(r))
	if err != nil {
		if e, ok := broker.AsError(err); ok {
			done(StatusOf(e.Kind), false, e.Message)
			return
		}
		a.log.Error("api: sso callback", "err", err)
		done(http.StatusBadGateway, false, "the identity provider could not be reached: try again")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", HttpOnly: true,
		Secure: !a.o.InsecureCookies, SameSite: http.SameSiteStrictMode, Expires: tok.ExpiresAt,
		MaxAge: int(a.o.SessionTTL.Seconds())})
	done(http.StatusOK, true, "signed in as "+tok.User)
}

// sanitizeCode keeps an OAuth error code printable and short.
func sanitizeCode(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return -1
	}, s)
	return s[:min(len(s), 64)]
}

type ssoStartBody struct {
	RedirectURI string `json:"redirect_uri"`
}

// ssoStart begins a CLI sign-in whose code comes back to the CLI's
// loopback listener (custos login --sso).
func (a *API) ssoStart(w http.ResponseWriter, r *http.Request) {
	s := a.sso()
	if s == nil {
		WriteError(w, http.StatusNotFound, "sso_disabled", "single sign-on is not configured on this broker")
		return
	}
	var in ssoStartBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	authURL, state, err := s.BeginSSO(r.Context(), "cli", in.RedirectURI)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"auth_url": authURL, "state": state})
}

type ssoTokenBody struct {
	State string `json:"state"`
	Code  string `json:"code"`
}

// ssoToken exchanges the code the CLI received for an API token; the
// broker talks to the provider, so the client secret stays here.
func (a *API) ssoToken(w http.ResponseWriter, r *http.Request) {
	s := a.sso()
	if s == nil {
		WriteError(w, http.StatusNotFound, "sso_disabled", "single sign-on is not configured on this broker")
		return
	}
	var in ssoTokenBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	secret, tok, err := s.CompleteSSO(r.Context(), "cli", in.State, in.Code, "api", 0, ClientIP(r))
	if err != nil {
		a.Fail(w, err)
		return
	}
	writeLogin(w, secret, tok)
}

// ssoDevice starts a device sign-in (custos login --sso --device).
func (a *API) ssoDevice(w http.ResponseWriter, r *http.Request) {
	s := a.sso()
	if s == nil {
		WriteError(w, http.StatusNotFound, "sso_disabled", "single sign-on is not configured on this broker")
		return
	}
	d, err := s.StartDevice(r.Context())
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, d)
}

type ssoDeviceTokenBody struct {
	Handle string `json:"handle"`
}

// ssoDeviceToken waits a while for the user to approve the device; 202
// with pending while they have not.
func (a *API) ssoDeviceToken(w http.ResponseWriter, r *http.Request) {
	s := a.sso()
	if s == nil {
		WriteError(w, http.StatusNotFound, "sso_disabled", "single sign-on is not configured on this broker")
		return
	}
	var in ssoDeviceTokenBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	secret, tok, err := s.CompleteDevice(r.Context(), in.Handle, devicePollWait, ClientIP(r))
	if e, ok := broker.AsError(err); ok && e.Code == codePending {
		WriteJSON(w, http.StatusAccepted, map[string]bool{"pending": true})
		return
	}
	if err != nil {
		a.Fail(w, err)
		return
	}
	writeLogin(w, secret, tok)
}

// writeLogin answers a sign-in that issued an API token.
func writeLogin(w http.ResponseWriter, secret string, tok broker.Token) {
	WriteJSON(w, http.StatusOK, map[string]any{"token": secret, "user": tok.User, "token_id": tok.ID,
		"expires_at": tok.ExpiresAt, "auth_method": tok.AuthMethod, "auth_time": tok.AuthTime})
}
