package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/custos-pam/custos/broker/breakglass"
)

// breakGlassEnabled reports whether break-glass accounts are configured
// and served.
func (a *API) breakGlassEnabled() bool {
	return a.o.BreakGlass != nil && len(a.o.Config.BreakGlass) > 0
}

// withBreakGlass answers 404 when break-glass is not configured.
func (a *API) withBreakGlass(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.breakGlassEnabled() {
			WriteError(w, http.StatusNotFound, "not_configured", "no break-glass accounts are configured")
			return
		}
		h(w, r)
	}
}

// withDrills answers 404 when the broker runs no break-glass service,
// the keeper of drill evidence (break-glass and restore drills).
func (a *API) withDrills(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.o.BreakGlass == nil {
			WriteError(w, http.StatusNotFound, "not_configured", "drills are not served by this broker")
			return
		}
		h(w, r)
	}
}

// factorBody is the second factor a custodian presents again. Every step
// that opens an account or shows its secret takes it: a bearer token or a
// session cookie alone is never enough.
type factorBody struct {
	Password string `json:"password"`
	TOTP     string `json:"totp"`
	// Meaning signs the confirmation, when signatures.unseal is
	// "required" (one of GET /api/v1/signatures/meanings' unseal list).
	Meaning string `json:"meaning,omitempty"`
	// Passkey is a passkey assertion (the PublicKeyCredential's JSON)
	// for a challenge from POST /api/v1/stepup/begin: with
	// signatures.unseal required the signature's (action "signature",
	// object "unseal:ID", or "unseal:account/NAME" when asking),
	// otherwise the step-up identity.step_up.breakglass_confirm asks for
	// (action "breakglass.confirm", object the unseal ID; asking:
	// "breakglass.unseal", the account name).
	Passkey json.RawMessage `json:"passkey,omitempty"`
	// Via is accepted from older clients and ignored: the server decides
	// the channel from how the caller signed in.
	Via string `json:"via,omitempty"`
}

// factor is the caller's second factor, with the channel the server
// decided (never one the body names).
func (f factorBody) factor(r *http.Request) breakglass.Factor {
	return breakglass.Factor{Password: f.Password, TOTP: f.TOTP, Meaning: f.Meaning, Passkey: f.Passkey, Via: principal(r).Via, Source: ClientIP(r)}
}

// bgAccount is an account as the API shows it: its configuration, state
// and drill standing.
type bgAccount struct {
	breakglass.AccountView
	// TOTPRequired says confirmations ask for an authenticator code as
	// well as the password.
	TOTPRequired bool `json:"totp_required"`
	// Drills is the last and running drill; nil when the service has none
	// for the account.
	Drills *breakglass.DrillStatus `json:"drills,omitempty"`
}

// bgList is GET /api/v1/breakglass.
type bgList struct {
	Accounts []bgAccount `json:"accounts"`
	// Overdue names the accounts whose drill is overdue.
	Overdue []string `json:"overdue"`
}

// listBreakGlass returns the accounts the caller may see (custodians and
// security staff) with their drill standing.
func (a *API) listBreakGlass(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	accts, err := a.o.BreakGlass.List(r.Context(), p.User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	drills, err := a.o.BreakGlass.DrillStatuses(r.Context(), p.User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	out := bgList{Accounts: []bgAccount{}, Overdue: []string{}}
	for _, acct := range accts {
		v := bgAccount{AccountView: acct, TOTPRequired: true}
		if c, ok := a.o.Config.FindBreakGlass(acct.Name); ok {
			v.TOTPRequired = c.TOTPRequired()
		}
		for i := range drills {
			if drills[i].Account == acct.Name {
				v.Drills = &drills[i]
			}
		}
		if acct.Drill.Overdue {
			out.Overdue = append(out.Overdue, acct.Name)
		}
		out.Accounts = append(out.Accounts, v)
	}
	WriteJSON(w, http.StatusOK, out)
}

func (a *API) breakGlassStatus(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	v, err := a.o.BreakGlass.Status(r.Context(), p.User, r.PathValue("account"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

type unsealBody struct {
	factorBody
	Reason   string `json:"reason"`
	Incident string `json:"incident"`
}

func (a *API) unseal(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var in unsealBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	u, err := a.o.BreakGlass.Unseal(r.Context(), p.User, breakglass.UnsealRequest{Account: r.PathValue("account"),
		Reason: in.Reason, Incident: in.Incident, Factor: in.factor(r)})
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, u)
}

func (a *API) confirm(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var in factorBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	u, err := a.o.BreakGlass.Confirm(r.Context(), p.User, r.PathValue("id"), in.factor(r))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, u)
}

func (a *API) closeBreakGlass(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var in struct {
		Reason string `json:"reason"`
	}
	if !decodeOptional(w, r, &in) {
		return
	}
	v, err := a.o.BreakGlass.Close(r.Context(), p.User, r.PathValue("account"), strings.TrimSpace(in.Reason))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (a *API) reveal(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var in factorBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	sec, err := a.o.BreakGlass.Reveal(r.Context(), p.User, r.PathValue("account"), in.factor(r))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, sec)
}

func (a *API) report(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var in struct {
		Incident string `json:"incident"`
		Details  string `json:"details"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	v, err := a.o.BreakGlass.ReportOutOfBand(r.Context(), p.User, r.PathValue("account"), in.Incident, in.Details)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (a *API) drillStatus(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	out, err := a.o.BreakGlass.DrillStatuses(r.Context(), p.User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, out)
}

type startDrillBody struct {
	factorBody
	Account string `json:"account"`
}

func (a *API) startDrill(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var in startDrillBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	d, err := a.o.BreakGlass.StartDrill(r.Context(), p.User, in.Account, in.factor(r))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, d)
}

func (a *API) getDrill(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	d, err := a.o.BreakGlass.GetDrill(r.Context(), p.User, r.PathValue("id"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, d)
}

// drillReport: ?quarter=2026Q4 (required), ?format=json (default), text or
// csv.
func (a *API) drillReport(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	q := r.URL.Query()
	if q.Get("quarter") == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", "quarter is required, e.g. ?quarter=2026Q4")
		return
	}
	rep, err := a.o.BreakGlass.DrillReport(r.Context(), p.User, q.Get("quarter"))
	if err != nil {
		a.Fail(w, err)
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
		a.Fail(w, err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}
