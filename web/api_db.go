package web

import (
	"context"
	"net/http"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
)

// dbTokens issues database connection tokens; broker/dbtoken implements it.
type dbTokens interface {
	Issue(ctx context.Context, user, target, role, source string) (string, broker.Token, broker.Grant, error)
}

// DBAPI serves POST /api/v1/db/token: a short-lived password for the
// PostgreSQL proxy, with the connection parameters to use it.
type DBAPI struct {
	Auth   Authenticator
	Tokens dbTokens
	// Host and Port are where clients reach the PostgreSQL proxy.
	Host, Port string
	// Database returns the target's default database.
	Database func(target string) string
}

// Register adds the route to s.
func (a *DBAPI) Register(s *Server) {
	s.Handle("POST /api/v1/db/token", RequireToken(a.Auth, a.token))
}

func (a *DBAPI) token(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in struct {
		Target string `json:"target"`
		Role   string `json:"role"`
	}
	if err := DecodeJSON(r, &in); err != nil || in.Target == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", "body must be {\"target\": NAME} or {\"target\": NAME, \"role\": ROLE}")
		return
	}
	secret, tok, g, err := a.Tokens.Issue(r.Context(), p.User, in.Target, in.Role, ClientIP(r))
	if err != nil {
		if e, ok := access.AsError(err); ok {
			WriteError(w, e.Status, e.Code, e.Message)
			return
		}
		WriteError(w, http.StatusInternalServerError, "internal", "could not issue a connection token")
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{
		"token": secret, "token_id": tok.ID, "expires_at": tok.ExpiresAt, "user": p.User, "target": in.Target,
		"grant_id": g.ID, "host": a.Host, "port": a.Port, "dbname": in.Target, "database": a.Database(in.Target),
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
