package web

import (
	"net/http"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
)

type extendBody struct {
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Ticket   string `json:"ticket"`
}

// extend asks for more time on the caller's active grant: a pending
// extension request, decided through the same approval path as a new
// request (POST /api/v1/requests/{id}/approve).
func (a *API) extend(w http.ResponseWriter, r *http.Request) {
	var in extendBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	d, err := config.ParseDuration(in.Duration)
	if err != nil || d <= 0 {
		WriteError(w, http.StatusBadRequest, "bad_duration", "duration must be a positive duration such as 30m or 1h")
		return
	}
	req, err := a.o.Access.Extend(r.Context(), principal(r).User, access.NewExtension{GrantID: r.PathValue("id"),
		Duration: d, Reason: in.Reason, Ticket: in.Ticket})
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, viewRequest(req, false))
}
