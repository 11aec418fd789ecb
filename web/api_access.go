package web

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
)

// AccessAPI serves the request, grant and access endpoints under /api/v1.
type AccessAPI struct {
	Auth   Authenticator
	Access *access.Service
	Log    *slog.Logger
}

// Register adds the API's routes to s.
func (a *AccessAPI) Register(s *Server) {
	s.HandleFunc("POST /api/v1/login", a.login)
	auth := func(h http.HandlerFunc) http.Handler { return RequireToken(a.Auth, h) }
	s.Handle("GET /api/v1/whoami", auth(a.whoami))
	s.Handle("GET /api/v1/tokens", auth(a.listTokens))
	s.Handle("DELETE /api/v1/tokens/{id}", auth(a.revokeToken))
	s.Handle("POST /api/v1/requests", auth(a.createRequest))
	s.Handle("GET /api/v1/requests", auth(a.listRequests))
	s.Handle("GET /api/v1/requests/{id}", auth(a.getRequest))
	s.Handle("POST /api/v1/requests/{id}/approve", auth(a.decide(true)))
	s.Handle("POST /api/v1/requests/{id}/deny", auth(a.decide(false)))
	s.Handle("POST /api/v1/requests/{id}/cancel", auth(a.cancel))
	s.Handle("GET /api/v1/grants", auth(a.listGrants))
	s.Handle("GET /api/v1/grants/{id}", auth(a.getGrant))
	s.Handle("POST /api/v1/grants/{id}/revoke", auth(a.revoke))
	s.Handle("GET /api/v1/access", auth(a.accessAt))
}

// RequestView is a request as the API shows it.
type RequestView struct {
	broker.Request
	Duration string `json:"duration"`
}

func viewRequest(r broker.Request) RequestView {
	if r.Approvals == nil {
		r.Approvals = []broker.Decision{}
	}
	return RequestView{Request: r, Duration: r.Duration.String()}
}

func viewRequests(rs []broker.Request) []RequestView {
	out := make([]RequestView, len(rs))
	for i, r := range rs {
		out[i] = viewRequest(r)
	}
	return out
}

func (a *AccessAPI) fail(w http.ResponseWriter, err error) {
	if e, ok := access.AsError(err); ok {
		WriteError(w, e.Status, e.Code, e.Message)
		return
	}
	a.Log.Error("api error", "err", err)
	WriteError(w, http.StatusInternalServerError, "internal", "internal error")
}

type loginBody struct {
	User     string `json:"user"`
	Password string `json:"password"`
	TOTP     string `json:"totp,omitempty"`
}

func (a *AccessAPI) login(w http.ResponseWriter, r *http.Request) {
	var in loginBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	secret, tok, err := a.Auth.Login(r.Context(), in.User, in.Password, in.TOTP, ClientIP(r))
	if err != nil {
		code := errorCode(err, "login_failed")
		status := http.StatusUnauthorized
		if code == "too_many_attempts" {
			status = http.StatusTooManyRequests
		}
		WriteError(w, status, code, err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"token": secret, "user": tok.User, "token_id": tok.ID, "expires_at": tok.ExpiresAt})
}

func (a *AccessAPI) whoami(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	WriteJSON(w, http.StatusOK, map[string]any{"user": p.User, "token_id": p.Token.ID, "expires_at": p.Token.ExpiresAt,
		"security_admin": a.Access.IsSecurityAdmin(p.User)})
}

func (a *AccessAPI) listTokens(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	toks, err := a.Auth.ListTokens(r.Context(), p.User)
	if err != nil {
		a.fail(w, err)
		return
	}
	if toks == nil {
		toks = []broker.Token{}
	}
	WriteJSON(w, http.StatusOK, toks)
}

func (a *AccessAPI) revokeToken(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	if err := a.Auth.RevokeToken(r.Context(), r.PathValue("id"), p.User); err != nil {
		WriteError(w, http.StatusNotFound, errorCode(err, "not_found"), err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"revoked": r.PathValue("id")})
}

type createRequestBody struct {
	Target   string `json:"target"`
	Role     string `json:"role"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Ticket   string `json:"ticket"`
}

func (a *AccessAPI) createRequest(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in createRequestBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	d, err := config.ParseDuration(in.Duration)
	if err != nil || d <= 0 {
		WriteError(w, http.StatusBadRequest, "bad_duration", "duration must be a positive duration such as 30m or 1h")
		return
	}
	req, err := a.Access.Create(r.Context(), p.User, access.NewRequest{Target: in.Target, Role: in.Role,
		Duration: d, Reason: in.Reason, Ticket: in.Ticket})
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, viewRequest(req))
}

// listRequests: ?mine=true → the caller's; ?pending=true → pending requests
// the caller may decide; otherwise security admins see all and others see
// their own plus those they may decide. ?state= filters by state.
func (a *AccessAPI) listRequests(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	q := r.URL.Query()
	f := broker.RequestFilter{Target: q.Get("target")}
	if s := q.Get("state"); s != "" {
		f.States = []broker.RequestState{broker.RequestState(s)}
	}
	var (
		out []broker.Request
		err error
	)
	switch {
	case q.Get("pending") == "true":
		out, err = a.Access.PendingFor(r.Context(), p.User)
	case q.Get("mine") == "true" || !a.Access.IsSecurityAdmin(p.User):
		f.User = p.User
		out, err = a.Access.ListRequests(r.Context(), f)
		if err == nil && q.Get("mine") != "true" {
			var more []broker.Request
			more, err = a.Access.PendingFor(r.Context(), p.User)
			out = append(out, more...)
		}
	default:
		out, err = a.Access.ListRequests(r.Context(), f)
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, viewRequests(out))
}

func (a *AccessAPI) getRequest(w http.ResponseWriter, r *http.Request) {
	req, err := a.Access.GetRequest(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, viewRequest(req))
}

type decideBody struct {
	Comment string `json:"comment"`
	Reason  string `json:"reason"`
	Via     string `json:"via"`
}

func (a *AccessAPI) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		var in decideBody
		if r.ContentLength != 0 {
			if err := DecodeJSON(r, &in); err != nil {
				WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
				return
			}
		}
		comment := in.Comment
		if !approve {
			comment = strings.TrimSpace(in.Reason + " " + in.Comment)
			if comment == "" {
				WriteError(w, http.StatusBadRequest, "reason_required", "a deny needs a reason")
				return
			}
		}
		via := in.Via
		if via != "web" {
			via = "cli"
		}
		req, grant, err := a.Access.Decide(r.Context(), p.User, r.PathValue("id"), access.Decision{Approve: approve, Comment: comment, Via: via})
		if err != nil {
			a.fail(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"request": viewRequest(req), "grant": grant})
	}
}

func (a *AccessAPI) cancel(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	req, err := a.Access.Cancel(r.Context(), p.User, r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, viewRequest(req))
}

// listGrants: ?active=true, ?target=, ?user=. Non-admins see their own.
func (a *AccessAPI) listGrants(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	q := r.URL.Query()
	f := broker.GrantFilter{Target: q.Get("target"), User: q.Get("user")}
	if q.Get("active") == "true" {
		f.States = []broker.GrantState{broker.GrantActive}
	}
	if !a.Access.IsSecurityAdmin(p.User) {
		f.User = p.User
	}
	gs, err := a.Access.ListGrants(r.Context(), f)
	if err != nil {
		a.fail(w, err)
		return
	}
	if gs == nil {
		gs = []broker.Grant{}
	}
	WriteJSON(w, http.StatusOK, gs)
}

func (a *AccessAPI) getGrant(w http.ResponseWriter, r *http.Request) {
	g, err := a.Access.GetGrant(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, g)
}

type revokeBody struct {
	Reason string `json:"reason"`
}

func (a *AccessAPI) revoke(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in revokeBody
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &in); err != nil {
			WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	}
	g, err := a.Access.Revoke(r.Context(), p.User, r.PathValue("id"), in.Reason)
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, g)
}

// accessAt answers GET /api/v1/access?target=X&at=RFC3339 (default now).
func (a *AccessAPI) accessAt(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target := q.Get("target")
	if target == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", "target is required")
		return
	}
	at := time.Now()
	if s := q.Get("at"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "bad_time", "at must be an RFC 3339 time such as 2026-11-23T14:00:00Z")
			return
		}
		at = t
	}
	gs, err := a.Access.AccessAt(r.Context(), target, at)
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"target": target, "at": at.UTC(), "grants": gs})
}
