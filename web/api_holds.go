package web

import (
	"errors"
	"net/http"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/holds"
)

// holdStore is where the PostgreSQL proxy's held statements wait
// (broker/holds.Store).
type holdStore interface {
	List() []holds.Hold
	Get(id string) (holds.Hold, bool)
	Decide(id, approver string, approve bool, reason string) (holds.Hold, error)
}

// holdView is a hold as the API shows it, with what the caller may do.
type holdView struct {
	holds.Hold
	CanDecide bool `json:"can_decide"`
}

func (a *API) holdFacts(user string, h holds.Hold) access.Facts {
	return a.o.Access.HoldFacts(user, h.User, h.Target, h.Role)
}

func (a *API) viewHold(user string, h holds.Hold) holdView {
	return holdView{Hold: h, CanDecide: h.State == holds.Pending && access.Allowed(access.DecideHold, a.holdFacts(user, h))}
}

// listHolds serves GET /api/v1/holds: the held statements the caller may
// see (their own sessions', those of roles they approve, all for
// security), pending first.
func (a *API) listHolds(w http.ResponseWriter, r *http.Request) {
	if a.o.Holds == nil {
		WriteJSON(w, http.StatusOK, []holdView{})
		return
	}
	p := principal(r)
	out := []holdView{}
	for _, h := range a.o.Holds.List() {
		if access.Allowed(access.ViewHold, a.holdFacts(p.User, h)) {
			out = append(out, a.viewHold(p.User, h))
		}
	}
	WriteJSON(w, http.StatusOK, out)
}

// getHold serves GET /api/v1/holds/{id}.
func (a *API) getHold(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	h, ok := a.findHold(r.PathValue("id"))
	if !ok || !access.Allowed(access.ViewHold, a.holdFacts(p.User, h)) {
		WriteError(w, http.StatusNotFound, "not_found", "no such hold")
		return
	}
	WriteJSON(w, http.StatusOK, a.viewHold(p.User, h))
}

func (a *API) findHold(id string) (holds.Hold, bool) {
	if a.o.Holds == nil {
		return holds.Hold{}, false
	}
	return a.o.Holds.Get(id)
}

// decideHold serves POST /api/v1/holds/{id}/approve and /deny: an
// approver of the session's role, never the session's own user, lets the
// held statement run once or refuses it.
func (a *API) decideHold(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		h, ok := a.findHold(r.PathValue("id"))
		if !ok || !access.Allowed(access.ViewHold, a.holdFacts(p.User, h)) {
			WriteError(w, http.StatusNotFound, "not_found", "no such hold")
			return
		}
		if !access.Allowed(access.DecideHold, a.holdFacts(p.User, h)) {
			WriteError(w, http.StatusForbidden, "forbidden", "only an approver of "+h.Target+"/"+h.Role+
				" other than the session's user may decide this statement")
			return
		}
		var in decideBody
		if r.ContentLength != 0 {
			if err := DecodeJSON(r, &in); err != nil {
				WriteError(w, http.StatusBadRequest, "bad_request", "body must be {\"reason\": TEXT}")
				return
			}
		}
		reason := in.Reason
		if reason == "" {
			reason = in.Comment
		}
		got, err := a.o.Holds.Decide(h.ID, p.User, approve, reason)
		switch {
		case errors.Is(err, holds.ErrDecided):
			WriteError(w, http.StatusConflict, "already_decided", "the hold is "+got.State)
			return
		case errors.Is(err, holds.ErrOwnHold):
			WriteError(w, http.StatusForbidden, "forbidden", "a user may not decide a statement of their own session")
			return
		case err != nil:
			WriteError(w, http.StatusNotFound, "not_found", "no such hold")
			return
		}
		WriteJSON(w, http.StatusOK, a.viewHold(p.User, got))
	}
}
