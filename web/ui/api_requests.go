package webui

import (
	"net/http"
	"strings"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/web"
)

type roleView struct {
	Name        string `json:"name"`
	MaxDuration string `json:"max_duration,omitempty"`
	Approvals   int    `json:"approvals"`
	Reason      bool   `json:"reason_required"`
	Ticket      bool   `json:"ticket_required"`
}

type targetView struct {
	Name        string     `json:"name"`
	Kind        string     `json:"kind"`
	Description string     `json:"description,omitempty"`
	Roles       []roleView `json:"roles"`
}

// targets lists the targets and roles for the request form.
func (u *UI) targets(w http.ResponseWriter, r *http.Request) {
	out := []targetView{}
	for _, t := range u.o.Config.Targets {
		tv := targetView{Name: t.Name, Kind: t.Kind, Description: t.Description, Roles: []roleView{}}
		for _, role := range t.Roles {
			rv := roleView{Name: role.Name, Approvals: role.Policy.Approvals, Reason: role.Policy.RequireReason,
				Ticket: role.Policy.RequireTicket}
			if d := role.Policy.MaxDuration.D(); d > 0 {
				rv.MaxDuration = d.String()
			}
			tv.Roles = append(tv.Roles, rv)
		}
		out = append(out, tv)
	}
	web.WriteJSON(w, http.StatusOK, out)
}

// requestView is a request as the page shows it.
type requestView struct {
	broker.Request
	Duration string `json:"duration"`
	// CanDecide is set on pending requests the caller may approve or deny.
	CanDecide bool `json:"can_decide"`
}

// listRequests: ?view=mine (default), pending (the caller may decide), or
// all (security admins).
func (u *UI) listRequests(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	ctx := r.Context()
	var (
		out []broker.Request
		err error
	)
	pending := map[string]bool{}
	mayDecide, err := u.o.Access.PendingFor(ctx, p.User)
	if err != nil {
		u.fail(w, err)
		return
	}
	for _, q := range mayDecide {
		pending[q.ID] = true
	}
	switch r.URL.Query().Get("view") {
	case "pending":
		out = mayDecide
	case "all":
		if !p.Admin {
			web.WriteError(w, http.StatusForbidden, "forbidden", "only security admins see every request")
			return
		}
		out, err = u.o.Access.ListRequests(ctx, broker.RequestFilter{Limit: 500})
	default:
		out, err = u.o.Access.ListRequests(ctx, broker.RequestFilter{User: p.User, Limit: 500})
	}
	if err != nil {
		u.fail(w, err)
		return
	}
	views := make([]requestView, 0, len(out))
	for _, q := range out {
		if q.Approvals == nil {
			q.Approvals = []broker.Decision{}
		}
		views = append(views, requestView{Request: q, Duration: q.Duration.String(), CanDecide: pending[q.ID]})
	}
	web.WriteJSON(w, http.StatusOK, views)
}

type createBody struct {
	Target   string `json:"target"`
	Role     string `json:"role"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Ticket   string `json:"ticket"`
}

func (u *UI) createRequest(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	var in createBody
	if err := web.DecodeJSON(r, &in); err != nil {
		web.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	d, err := config.ParseDuration(in.Duration)
	if err != nil || d <= 0 {
		web.WriteError(w, http.StatusBadRequest, "bad_duration", "duration must be a positive duration such as 30m or 1h")
		return
	}
	req, err := u.o.Access.Create(r.Context(), p.User, access.NewRequest{Target: in.Target, Role: in.Role,
		Duration: d, Reason: in.Reason, Ticket: in.Ticket})
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusCreated, requestView{Request: req, Duration: req.Duration.String()})
}

type decideBody struct {
	Comment string `json:"comment"`
}

// decide approves or denies through the same access service, and so the
// same rules, as Slack and the CLI. A denial needs a reason.
func (u *UI) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principalFrom(r.Context())
		var in decideBody
		if r.ContentLength != 0 {
			if err := web.DecodeJSON(r, &in); err != nil {
				web.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
				return
			}
		}
		in.Comment = strings.TrimSpace(in.Comment)
		if !approve && in.Comment == "" {
			web.WriteError(w, http.StatusBadRequest, "reason_required", "a denial needs a reason")
			return
		}
		req, grant, err := u.o.Access.Decide(r.Context(), p.User, r.PathValue("id"),
			access.Decision{Approve: approve, Comment: in.Comment, Via: "web"})
		if err != nil {
			u.fail(w, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"request": requestView{Request: req, Duration: req.Duration.String()}, "grant": grant})
	}
}

func (u *UI) cancel(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	req, err := u.o.Access.Cancel(r.Context(), p.User, r.PathValue("id"))
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, requestView{Request: req, Duration: req.Duration.String()})
}

// listGrants: the caller's grants and those they approved; every grant for
// security admins. ?active=true keeps active ones.
func (u *UI) listGrants(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	f := broker.GrantFilter{Limit: 500}
	if r.URL.Query().Get("active") == "true" {
		f.States = []broker.GrantState{broker.GrantActive}
	}
	gs, err := u.o.Access.ListGrants(r.Context(), f)
	if err != nil {
		u.fail(w, err)
		return
	}
	out := []broker.Grant{}
	for _, g := range gs {
		if p.Admin || g.User == p.User || contains(g.Approvers, p.User) {
			out = append(out, g)
		}
	}
	web.WriteJSON(w, http.StatusOK, out)
}

type revokeBody struct {
	Reason string `json:"reason"`
}

func (u *UI) revoke(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	var in revokeBody
	if err := web.DecodeJSON(r, &in); err != nil || strings.TrimSpace(in.Reason) == "" {
		web.WriteError(w, http.StatusBadRequest, "reason_required", "revoking a grant needs a reason")
		return
	}
	g, err := u.o.Access.Revoke(r.Context(), p.User, r.PathValue("id"), strings.TrimSpace(in.Reason))
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, g)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
