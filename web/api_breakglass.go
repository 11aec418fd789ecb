package web

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"

	"github.com/custos-pam/custos/broker/breakglass"
)

// BreakGlassAPI serves the break-glass and drill endpoints under
// /api/v1/breakglass and /api/v1/drills. Every step that opens an account
// or shows its secret takes the caller's password and TOTP code again in
// the body: a bearer token alone is never enough.
type BreakGlassAPI struct {
	Auth       Authenticator
	BreakGlass *breakglass.Service
	Log        *slog.Logger
}

// Register adds the API's routes to s.
func (a *BreakGlassAPI) Register(s *Server) {
	auth := func(h http.HandlerFunc) http.Handler { return RequireToken(a.Auth, h) }
	s.Handle("GET /api/v1/breakglass", auth(a.list))
	s.Handle("GET /api/v1/breakglass/{account}", auth(a.status))
	s.Handle("POST /api/v1/breakglass/{account}/unseal", auth(a.unseal))
	s.Handle("POST /api/v1/breakglass/unseals/{id}/confirm", auth(a.confirm))
	s.Handle("POST /api/v1/breakglass/{account}/close", auth(a.close))
	s.Handle("POST /api/v1/breakglass/{account}/reveal", auth(a.reveal))
	s.Handle("POST /api/v1/breakglass/{account}/report", auth(a.report))
	s.Handle("GET /api/v1/drills", auth(a.drillStatus))
	s.Handle("POST /api/v1/drills", auth(a.startDrill))
	s.Handle("GET /api/v1/drills/report", auth(a.drillReport))
	s.Handle("GET /api/v1/drills/{id}", auth(a.getDrill))
}

func (a *BreakGlassAPI) fail(w http.ResponseWriter, err error) {
	if e, ok := breakglass.AsError(err); ok {
		WriteError(w, e.Status, e.Code, e.Message)
		return
	}
	a.Log.Error("break-glass api error", "err", err)
	WriteError(w, http.StatusInternalServerError, "internal", "internal error")
}

// factorBody is the second factor a custodian presents again.
type factorBody struct {
	Password string `json:"password"`
	TOTP     string `json:"totp"`
	Via      string `json:"via"`
}

func (f factorBody) factor(r *http.Request) breakglass.Factor {
	via := "cli"
	if f.Via == "web" {
		via = "web"
	}
	return breakglass.Factor{Password: f.Password, TOTP: f.TOTP, Via: via, Source: ClientIP(r)}
}

func (a *BreakGlassAPI) list(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	out, err := a.BreakGlass.List(r.Context(), p.User)
	if err != nil {
		a.fail(w, err)
		return
	}
	if out == nil {
		out = []breakglass.AccountView{}
	}
	WriteJSON(w, http.StatusOK, out)
}

func (a *BreakGlassAPI) status(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	v, err := a.BreakGlass.Status(r.Context(), p.User, r.PathValue("account"))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

type unsealBody struct {
	factorBody
	Reason   string `json:"reason"`
	Incident string `json:"incident"`
}

func (a *BreakGlassAPI) unseal(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in unsealBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	u, err := a.BreakGlass.Unseal(r.Context(), p.User, breakglass.UnsealRequest{Account: r.PathValue("account"),
		Reason: in.Reason, Incident: in.Incident, Factor: in.factor(r)})
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, u)
}

func (a *BreakGlassAPI) confirm(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in factorBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	u, err := a.BreakGlass.Confirm(r.Context(), p.User, r.PathValue("id"), in.factor(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, u)
}

func (a *BreakGlassAPI) close(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &in); err != nil {
			WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	}
	v, err := a.BreakGlass.Close(r.Context(), p.User, r.PathValue("account"), in.Reason)
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (a *BreakGlassAPI) reveal(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in factorBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	sec, err := a.BreakGlass.Reveal(r.Context(), p.User, r.PathValue("account"), in.factor(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, sec)
}

func (a *BreakGlassAPI) report(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in struct {
		Incident string `json:"incident"`
		Details  string `json:"details"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	v, err := a.BreakGlass.ReportOutOfBand(r.Context(), p.User, r.PathValue("account"), in.Incident, in.Details)
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (a *BreakGlassAPI) drillStatus(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	out, err := a.BreakGlass.DrillStatuses(r.Context(), p.User)
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, out)
}

type startDrillBody struct {
	factorBody
	Account string `json:"account"`
}

func (a *BreakGlassAPI) startDrill(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in startDrillBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	d, err := a.BreakGlass.StartDrill(r.Context(), p.User, in.Account, in.factor(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, d)
}

func (a *BreakGlassAPI) getDrill(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	d, err := a.BreakGlass.GetDrill(r.Context(), p.User, r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, d)
}

// drillReport: ?quarter=2026Q4 (required), ?format=json (default), text or
// csv.
func (a *BreakGlassAPI) drillReport(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	q := r.URL.Query()
	if q.Get("quarter") == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", "quarter is required, e.g. ?quarter=2026Q4")
		return
	}
	rep, err := a.BreakGlass.DrillReport(r.Context(), p.User, q.Get("quarter"))
	if err != nil {
		a.fail(w, err)
		return
	}
	var (
		buf   bytes.Buffer
		ctype string
	)
	switch strings.ToLower(q.Get("format")) {
	case "", "json":
		WriteJSON(w, http.StatusOK, rep)
		return
	case "text":
		ctype, err = "text/plain; charset=utf-8", rep.WriteText(&buf)
	case "csv":
		ctype, err = "text/csv; charset=utf-8", rep.WriteCSV(&buf)
		w.Header().Set("Content-Disposition", `attachment; filename="breakglass-drills-`+rep.Quarter+`.csv"`)
	default:
		WriteError(w, http.StatusBadRequest, "bad_request", "format must be json, text or csv")
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}
