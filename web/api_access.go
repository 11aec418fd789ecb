package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
)

// RequestView is a request as the API shows it.
type RequestView struct {
	broker.Request
	Duration string `json:"duration"`
	// CanDecide is set on pending requests the caller may approve or deny.
	CanDecide bool `json:"can_decide"`
	// SignatureRequired is set when deciding the request is an electronic
	// signature (the role's policy.signature).
	SignatureRequired bool `json:"signature_required"`
	// StepUp is what an approval must confirm with (the role's
	// policy.step_up: passkey, totp or any); empty for none. A signature
	// counts as the step-up it amounts to.
	StepUp string `json:"step_up,omitempty"`
}

func viewRequest(r broker.Request, canDecide bool) RequestView {
	if r.Approvals == nil {
		r.Approvals = []broker.Decision{}
	}
	return RequestView{Request: r, Duration: r.Duration.String(), CanDecide: canDecide}
}

type createRequestBody struct {
	Target   string `json:"target"`
	Role     string `json:"role"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Ticket   string `json:"ticket"`
}

func (a *API) createRequest(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
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
	req, err := a.o.Access.Create(r.Context(), p.User, access.NewRequest{Target: in.Target, Role: in.Role,
		Duration: d, Reason: in.Reason, Ticket: in.Ticket})
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, viewRequest(req, false))
}

// listRequests: ?view=mine (or ?mine=true) → the caller's; ?view=pending
// (or ?pending=true) → pending requests the caller may decide; ?view=all →
// every request (security and auditors only); without a view, everything
// for security and auditors, otherwise their own plus those they may
// decide. ?state= and ?target= filter.
func (a *API) listRequests(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	ctx := r.Context()
	q := r.URL.Query()
	f := broker.RequestFilter{Target: q.Get("target")}
	if s := q.Get("state"); s != "" {
		f.States = []broker.RequestState{broker.RequestState(s)}
	}
	view := q.Get("view")
	switch {
	case view == "" && q.Get("pending") == "true":
		view = "pending"
	case view == "" && q.Get("mine") == "true":
		view = "mine"
	}
	pending, err := a.o.Access.PendingFor(ctx, p.User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	mayDecide := map[string]bool{}
	for _, q := range pending {
		mayDecide[q.ID] = true
	}
	var out []broker.Request
	switch view {
	case "pending":
		out = pending
	case "mine":
		f.User = p.User
		out, err = a.o.Access.ListRequests(ctx, f)
	case "all":
		if !a.o.Access.May(p.User, access.ListAllRequests) {
			WriteError(w, http.StatusForbidden, "forbidden", "only security staff and auditors see every request")
			return
		}
		out, err = a.o.Access.ListRequests(ctx, f)
	case "":
		out, err = a.o.Access.VisibleRequests(ctx, p.User, f)
	default:
		WriteError(w, http.StatusBadRequest, "bad_filter", "view must be mine, pending or all")
		return
	}
	if err != nil {
		a.Fail(w, err)
		return
	}
	views := make([]RequestView, 0, len(out))
	for _, q := range out {
		v := viewRequest(q, mayDecide[q.ID])
		v.SignatureRequired, v.StepUp = a.signatureRequired(q.Target, q.Role), a.stepUpRequired(q.Target, q.Role)
		views = append(views, v)
	}
	WriteJSON(w, http.StatusOK, views)
}

// getRequest answers one request the caller may see: their own, one they
// may decide, any for security and auditors.
func (a *API) getRequest(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	req, err := a.o.Access.ViewRequestAs(r.Context(), p.User, r.PathValue("id"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	canDecide := req.State == broker.RequestPending && a.o.Access.CheckDecide(p.User, req) == nil
	v := viewRequest(req, canDecide)
	v.SignatureRequired, v.StepUp = a.signatureRequired(req.Target, req.Role), a.stepUpRequired(req.Target, req.Role)
	WriteJSON(w, http.StatusOK, v)
}

// decideBody is an approval's comment, or a denial's reason (either field).
// The channel recorded with the vote is the caller's (Principal.Via),
// never a field of the body.
type decideBody struct {
	Comment string `json:"comment"`
	Reason  string `json:"reason"`
	// Via is accepted from older clients and ignored.
	Via string `json:"via,omitempty"`
	// Signature signs the decision (required when the role's
	// policy.signature is "required").
	Signature *signatureBody `json:"signature,omitempty"`
	// StepUp is a fresh re-authentication bound to this request, which
	// roles with a step_up policy require for approval.
	StepUp *stepUpBody `json:"step_up,omitempty"`
}

// decide approves or denies through the access service, and so the same
// rules, as Slack. A denial needs a reason.
func (a *API) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		var in decideBody
		if !decodeOptional(w, r, &in) {
			return
		}
		comment := strings.TrimSpace(in.Comment)
		if !approve {
			comment = strings.TrimSpace(in.Reason + " " + in.Comment)
			if comment == "" {
				WriteError(w, http.StatusBadRequest, "reason_required", "a denial needs a reason")
				return
			}
		}
		action := identity.ActionDeny
		if approve {
			action = identity.ActionApprove
		}
		method, err := a.verifyStepUp(r.Context(), p.User, action, r.PathValue("id"), in.StepUp)
		if err != nil {
			a.Fail(w, err)
			return
		}
		req, grant, err := a.o.Access.Decide(r.Context(), p.User, r.PathValue("id"),
			access.Decision{Approve: approve, Comment: comment, Via: p.Via, Sign: in.Signature.input(r), StepUp: method})
		if err != nil {
			a.Fail(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"request": viewRequest(req, false), "grant": grant})
	}
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	req, err := a.o.Access.Cancel(r.Context(), principal(r).User, r.PathValue("id"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, viewRequest(req, false))
}

// listGrants: the grants the caller may see (their own, those of roles
// they approve or that they approved; every one for security and
// auditors), filtered by ?active=true, ?target=, ?user=.
func (a *API) listGrants(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := broker.GrantFilter{Target: q.Get("target"), User: q.Get("user")}
	if q.Get("active") == "true" {
		f.States = []broker.GrantState{broker.GrantActive}
	}
	gs, err := a.o.Access.VisibleGrants(r.Context(), principal(r).User, f)
	if err != nil {
		a.Fail(w, err)
		return
	}
	out := make([]GrantView, 0, len(gs))
	for _, g := range gs {
		out = append(out, a.viewGrant(g))
	}
	WriteJSON(w, http.StatusOK, out)
}

func (a *API) getGrant(w http.ResponseWriter, r *http.Request) {
	g, err := a.o.Access.ViewGrantAs(r.Context(), principal(r).User, r.PathValue("id"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, a.viewGrant(g))
}

// GrantView is a grant as the API shows it.
type GrantView struct {
	broker.Grant
	// EndingSoon is set on an active grant that ends within
	// notify.grant_ending_before: time to ask for an extension.
	EndingSoon bool `json:"ending_soon,omitempty"`
}

func (a *API) viewGrant(g broker.Grant) GrantView {
	before, now := a.current().Notify.EndingBefore(), time.Now()
	soon := before > 0 && g.State == broker.GrantActive && g.ActiveAt(now) && g.EndsAt.Sub(now) <= before
	return GrantView{Grant: g, EndingSoon: soon}
}

type revokeBody struct {
	Reason string `json:"reason"`
}

// revoke ends a grant. The web UI's form always asks for a reason, so a
// revocation from a web session without one is refused; from the CLI
// the access service records "revoked by USER".
func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var in revokeBody
	if !decodeOptional(w, r, &in) {
		return
	}
	reason := strings.TrimSpace(in.Reason)
	if reason == "" && p.Via == ViaWeb {
		WriteError(w, http.StatusBadRequest, "reason_required", "revoking a grant needs a reason")
		return
	}
	g, err := a.o.Access.Revoke(r.Context(), p.User, r.PathValue("id"), reason)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, g)
}

// accessAt answers GET /api/v1/access?target=X&at=RFC3339 (default now)
// with the grants active then that the caller may see.
func (a *API) accessAt(w http.ResponseWriter, r *http.Request) {
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
	gs, err := a.o.Access.AccessAtAs(r.Context(), principal(r).User, target, at)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"target": target, "at": at.UTC(), "grants": gs})
}
