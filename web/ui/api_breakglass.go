package webui

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/web"
)

// breakGlass runs break-glass accounts; *breakglass.Service implements it.
// The service decides who may see, unseal, confirm and close; the UI only
// carries the caller's identity and second factor to it.
type breakGlass interface {
	List(ctx context.Context, actor string) ([]breakglass.AccountView, error)
	DrillStatuses(ctx context.Context, actor string) ([]breakglass.DrillStatus, error)
	Unseal(ctx context.Context, actor string, in breakglass.UnsealRequest) (breakglass.Unseal, error)
	Confirm(ctx context.Context, actor, unsealID string, f breakglass.Factor) (breakglass.Unseal, error)
	Close(ctx context.Context, actor, name, reason string) (breakglass.AccountView, error)
}

// UnsealPath is the web UI page of one unseal request, where custodians
// review it and confirm with a fresh second factor. Slack's security
// notice links to it.
func UnsealPath(id string) string { return unsealPages + url.PathEscape(id) }

// unsealPages is where the pages of unseal requests live.
const unsealPages = "/ui/breakglass/unseals/"

// breakGlassEnabled reports whether break-glass accounts are configured
// and served.
func (u *UI) breakGlassEnabled() bool {
	return u.o.BreakGlass != nil && len(u.o.Config.BreakGlass) > 0
}

// mayBreakGlass reports whether the break-glass page has anything for the
// user: security admins, and custodians of at least one account.
func (u *UI) mayBreakGlass(ctx context.Context, p principal) bool {
	if !u.breakGlassEnabled() {
		return false
	}
	if p.Admin {
		return true
	}
	accts, err := u.o.BreakGlass.List(ctx, p.User)
	return err == nil && len(accts) > 0
}

// withBreakGlass answers 404 when break-glass is not configured.
func (u *UI) withBreakGlass(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !u.breakGlassEnabled() {
			web.WriteError(w, http.StatusNotFound, "not_configured", "no break-glass accounts are configured")
			return
		}
		h(w, r)
	}
}

// bgAccount is an account as the page shows it: its configuration, state
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

type bgList struct {
	Accounts []bgAccount `json:"accounts"`
	// Overdue names the accounts whose drill is overdue.
	Overdue []string `json:"overdue"`
}

// listBreakGlass returns the accounts the caller may see (custodians and
// security admins) with their drill standing.
func (u *UI) listBreakGlass(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	accts, err := u.o.BreakGlass.List(r.Context(), p.User)
	if err != nil {
		u.fail(w, err)
		return
	}
	drills, err := u.o.BreakGlass.DrillStatuses(r.Context(), p.User)
	if err != nil {
		u.fail(w, err)
		return
	}
	out := bgList{Accounts: []bgAccount{}, Overdue: []string{}}
	for _, a := range accts {
		v := bgAccount{AccountView: a, TOTPRequired: true}
		if c, ok := u.o.Config.FindBreakGlass(a.Name); ok {
			v.TOTPRequired = c.TOTPRequired()
		}
		for i := range drills {
			if drills[i].Account == a.Name {
				v.Drills = &drills[i]
			}
		}
		if a.Drill.Overdue {
			out.Overdue = append(out.Overdue, a.Name)
		}
		out.Accounts = append(out.Accounts, v)
	}
	web.WriteJSON(w, http.StatusOK, out)
}

// factorBody is the second factor a custodian gives again: the same
// fields, checked by the same service, as the API's.
type factorBody struct {
	Password string `json:"password"`
	TOTP     string `json:"totp"`
}

func (f factorBody) factor(r *http.Request) breakglass.Factor {
	return breakglass.Factor{Password: f.Password, TOTP: f.TOTP, Via: "web", Source: web.ClientIP(r)}
}

type unsealBody struct {
	factorBody
	Reason   string `json:"reason"`
	Incident string `json:"incident"`
}

// unsealBreakGlass asks to open an account; the request is the caller's
// own confirmation, so it takes their second factor too.
func (u *UI) unsealBreakGlass(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	var in unsealBody
	if err := web.DecodeJSON(r, &in); err != nil {
		web.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	un, err := u.o.BreakGlass.Unseal(r.Context(), p.User, breakglass.UnsealRequest{Account: r.PathValue("account"),
		Reason: in.Reason, Incident: in.Incident, Factor: in.factor(r)})
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusCreated, un)
}

// confirmUnseal adds the caller's confirmation with a fresh second factor.
func (u *UI) confirmUnseal(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	var in factorBody
	if err := web.DecodeJSON(r, &in); err != nil {
		web.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	un, err := u.o.BreakGlass.Confirm(r.Context(), p.User, r.PathValue("id"), in.factor(r))
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, un)
}

// closeBreakGlass cancels a pending unseal, or closes an open account
// (its grant ends, it is rotated and resealed).
func (u *UI) closeBreakGlass(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	var in struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := web.DecodeJSON(r, &in); err != nil {
			web.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	}
	v, err := u.o.BreakGlass.Close(r.Context(), p.User, r.PathValue("account"), strings.TrimSpace(in.Reason))
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, v)
}
