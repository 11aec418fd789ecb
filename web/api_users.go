package web

import (
	"context"
	"net/http"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/identity"
)

// userDirectory lists every user; *identity.Service implements it.
type userDirectory interface {
	Factors(ctx context.Context) ([]identity.UserFactors, error)
}

// listUsers answers who exists (config, SSO and SCIM users), where they
// came from, their groups, factors, whether enabled and their last
// activity. Security admins only.
func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	if !a.o.Access.May(principal(r).User, access.ListUsers) {
		WriteError(w, http.StatusForbidden, "forbidden", "the user list is for security admins")
		return
	}
	if a.o.Users == nil {
		unavailable(w, "users_unavailable", "this broker does not list users")
		return
	}
	users, err := a.o.Users.Factors(r.Context())
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, users)
}
