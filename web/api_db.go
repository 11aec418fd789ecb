package web

import (
	"net/http"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// dbToken serves POST /api/v1/db/token: a short-lived password for the
// PostgreSQL proxy, with the connection parameters to use it.
func (a *API) dbToken(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if a.o.DBTokens == nil {
		unavailable(w, "no_postgres_proxy", "the PostgreSQL proxy does not run on this broker")
		return
	}
	var in struct {
		Target string `json:"target"`
		Role   string `json:"role"`
	}
	if err := DecodeJSON(r, &in); err != nil || in.Target == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", "body must be {\"target\": NAME} or {\"target\": NAME, \"role\": ROLE}")
		return
	}
	secret, tok, g, err := a.o.DBTokens.Issue(r.Context(), p.User, in.Target, in.Role, ClientIP(r))
	if err != nil {
		if _, ok := broker.AsError(err); ok {
			a.Fail(w, err)
			return
		}
		a.log.Error("api: db token", "err", err)
		WriteError(w, http.StatusInternalServerError, "internal", "could not issue a connection token")
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{
		"token": secret, "token_id": tok.ID, "expires_at": tok.ExpiresAt, "user": p.User, "target": in.Target,
		"grant_id": g.ID, "host": a.o.DBHost, "port": a.o.DBPort, "dbname": in.Target, "database": a.database(in.Target),
		"sslmode": "require", "role": g.Role, "options": roleOptions(in.Role),
	})
}

// roleOptions is the PostgreSQL options value that makes the proxy use the
// grant for role, or "" to let it pick the grant ending last.
func roleOptions(role string) string {
	if role == "" {
		return ""
	}
	return "-c custos.role=" + role
}

// database is target's default database.
func (a *API) database(target string) string {
	if t, ok := a.current().FindTarget(target); ok {
		return t.Postgres.Database
	}
	return ""
}

// current is the config targets are read from: the live one after a
// reload, else the one the API was built with.
func (a *API) current() *config.Config {
	if a.o.LiveConfig != nil {
		return a.o.LiveConfig.Load()
	}
	return a.o.Config
}
