package scim

import (
	"net/http"

	"github.com/custos-pam/custos/broker/identity"
)

// The steps every resource handler (Users, Groups) shares: read the body,
// change the state in one update, answer the resource, or the SCIM error.

// resource is a resource as answered; its meta holds its location.
type resource interface{ location() string }

func (u userResource) location() string  { return u.Meta.Location }
func (g groupResource) location() string { return g.Meta.Location }

// withBody decodes the request body into a T and calls fn with it; a
// body that is not JSON answers invalidSyntax.
func withBody[T any](h *Handler, w http.ResponseWriter, r *http.Request, fn func(T)) {
	var in T
	if err := decode(r, &in); err != nil {
		h.fail(w, err)
		return
	}
	fn(in)
}

// change runs fn in one SCIM state update and answers the resource it
// returns: 201 Created with its Location when created, else 200.
func change[R resource](h *Handler, w http.ResponseWriter, r *http.Request, created bool, fn func(*identity.SCIMState) (R, error)) {
	var out R
	err := h.store.SCIMUpdate(r.Context(), func(st *identity.SCIMState) error {
		var err error
		out, err = fn(st)
		return err
	})
	if err != nil {
		h.fail(w, err)
		return
	}
	if !created {
		writeJSON(w, http.StatusOK, out)
		return
	}
	w.Header().Set("Location", out.location())
	writeJSON(w, http.StatusCreated, out)
}

// remove runs fn in one SCIM state update and answers 204 No Content.
func remove(h *Handler, w http.ResponseWriter, r *http.Request, fn func(*identity.SCIMState) error) {
	if err := h.store.SCIMUpdate(r.Context(), fn); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listed answers a page of the resources pick returns from the state
// for the filter's terms (RFC 7644 §3.4.2), in the order it gives.
func listed(h *Handler, w http.ResponseWriter, r *http.Request, pick func(*identity.SCIMState, []term) []any) {
	terms, err := parseFilter(r.URL.Query().Get("filter"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalidFilter", err.Error())
		return
	}
	st, err := h.store.SCIMView(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	writeList(w, r, pick(st, terms))
}

// got answers the one resource find returns from the state.
func got[R resource](h *Handler, w http.ResponseWriter, r *http.Request, find func(*identity.SCIMState) (R, error)) {
	st, err := h.store.SCIMView(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	res, err := find(st)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
