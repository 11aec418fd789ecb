package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/kri"
)

// indicators computes the key risk indicators and keeps the actions their
// limits open; *kri.Evaluator implements it.
type indicators interface {
	Compute(ctx context.Context) ([]kri.Indicator, error)
	One(ctx context.Context, name string) (kri.Indicator, error)
	Actions(ctx context.Context, all bool) ([]kri.Action, error)
	CloseAction(ctx context.Context, actor, id, comment string) (kri.Action, error)
}

// registerIndicators adds the dashboard's routes: security staff only.
func (a *API) registerIndicators(auth func(string, http.HandlerFunc)) {
	kr := func(pattern string, action access.Action, h http.HandlerFunc) {
		auth(pattern, a.withIndicators(action, h))
	}
	kr("GET /api/v1/indicators", access.ViewIndicators, a.listIndicators)
	kr("GET /api/v1/indicators/{name}", access.ViewIndicators, a.getIndicator)
	kr("GET /api/v1/indicators/actions", access.ViewIndicators, a.listIndicatorActions)
	kr("POST /api/v1/indicators/actions/{id}/close", access.CloseIndicatorAction, a.closeIndicatorAction)
}

// withIndicators refuses callers the rules do not allow the action, and
// answers 503 on a broker that computes no indicators.
func (a *API) withIndicators(action access.Action, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.o.Access.May(principal(r).User, action) {
			WriteError(w, http.StatusForbidden, "forbidden", "the risk indicators are for security staff and auditors")
			return
		}
		if a.o.Indicators == nil {
			unavailable(w, "no_indicators", "this broker computes no risk indicators")
			return
		}
		h(w, r)
	}
}

// indicatorList is GET /api/v1/indicators: every indicator without its
// records, and the open actions.
type indicatorList struct {
	Indicators []kri.Indicator `json:"indicators"`
	Actions    []kri.Action    `json:"actions"`
}

func (a *API) listIndicators(w http.ResponseWriter, r *http.Request) {
	inds, err := a.o.Indicators.Compute(r.Context())
	if err != nil {
		a.Fail(w, err)
		return
	}
	for i := range inds {
		inds[i].Records = nil
	}
	acts, err := a.o.Indicators.Actions(r.Context(), false)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, indicatorList{Indicators: inds, Actions: acts})
}

func (a *API) getIndicator(w http.ResponseWriter, r *http.Request) {
	ind, err := a.o.Indicators.One(r.Context(), r.PathValue("name"))
	if errors.Is(err, kri.ErrUnknown) {
		WriteError(w, http.StatusNotFound, "not_found", "no indicator "+r.PathValue("name"))
		return
	}
	if err != nil {
		a.Fail(w, err)
		return
	}
	if ind.Records == nil {
		ind.Records = []kri.Record{}
	}
	WriteJSON(w, http.StatusOK, ind)
}

// listIndicatorActions answers the open actions, every action with
// ?all=true.
func (a *API) listIndicatorActions(w http.ResponseWriter, r *http.Request) {
	all := r.URL.Query().Get("all")
	acts, err := a.o.Indicators.Actions(r.Context(), all == "true" || all == "1")
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, acts)
}

func (a *API) closeIndicatorAction(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Comment string `json:"comment"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	act, err := a.o.Indicators.CloseAction(r.Context(), principal(r).User, r.PathValue("id"), in.Comment)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, act)
}
