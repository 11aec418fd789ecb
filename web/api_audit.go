package web

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// AuditAPI serves the audit log to security admins.
type AuditAPI struct {
	Auth  Authenticator
	Store broker.Store
	// Verifier checks the chain for GET /api/v1/audit/verify. Default:
	// the chain in Store alone (audit.Verify), without checkpoints.
	Verifier interface {
		Verify(ctx context.Context) (audit.Report, error)
	}
	// IsSecurityAdmin decides who may read the log.
	IsSecurityAdmin func(user string) bool
}

// Register adds the audit routes to s.
func (a *AuditAPI) Register(s *Server) {
	s.Handle("GET /api/v1/audit", RequireToken(a.Auth, a.admin(a.list)))
	s.Handle("GET /api/v1/audit/verify", RequireToken(a.Auth, a.admin(a.verify)))
}

func (a *AuditAPI) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		if !a.IsSecurityAdmin(p.User) {
			WriteError(w, http.StatusForbidden, "forbidden", "the audit log is for security admins")
			return
		}
		h(w, r)
	}
}

func (a *AuditAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := broker.AuditFilter{Actor: q.Get("actor"), Target: q.Get("target"), ActionPrefix: q.Get("action"), Limit: 1000}
	var err error
	parseTime := func(name string, dst *time.Time) {
		if v := q.Get(name); v != "" && err == nil {
			*dst, err = time.Parse(time.RFC3339Nano, v)
		}
	}
	parseTime("since", &f.Since)
	parseTime("until", &f.Until)
	if v := q.Get("after"); v != "" && err == nil {
		f.AfterSeq, err = strconv.ParseInt(v, 10, 64)
	}
	if v := q.Get("limit"); v != "" && err == nil {
		f.Limit, err = strconv.Atoi(v)
	}
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", "bad filter: "+err.Error())
		return
	}
	var recs []broker.AuditRecord
	if err := a.Store.View(r.Context(), func(tx broker.Tx) error {
		var err error
		recs, err = tx.ListAudit(f)
		return err
	}); err != nil {
		WriteError(w, http.StatusInternalServerError, "internal", "read audit log failed")
		return
	}
	if recs == nil {
		recs = []broker.AuditRecord{}
	}
	WriteJSON(w, http.StatusOK, recs)
}

func (a *AuditAPI) verify(w http.ResponseWriter, r *http.Request) {
	var rep audit.Report
	var err error
	if a.Verifier != nil {
		rep, err = a.Verifier.Verify(r.Context())
	} else {
		rep, err = audit.Verify(r.Context(), a.Store)
	}
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "internal", "verify failed: "+err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, rep)
}
