package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/audit/views"
)

// auditor wraps h so only those the rules let read the audit log
// (security staff and auditors) reach it.
func (a *API) auditor(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.o.Access.May(principal(r).User, access.ReadAudit) {
			WriteError(w, http.StatusForbidden, "forbidden", "the audit log is for security staff and auditors")
			return
		}
		h(w, r)
	}
}

// auditList answers the raw log with filters: actor, target, action
// (prefix), since, until, after (seq), limit (default 1000, at most 5000).
func (a *API) auditList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := broker.AuditFilter{Actor: q.Get("actor"), Target: q.Get("target"), ActionPrefix: q.Get("action"), Limit: 1000}
	var err error
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" && err == nil {
			*dst, err = ParseTime(v)
		}
	}
	if v := q.Get("after"); v != "" && err == nil {
		f.AfterSeq, err = strconv.ParseInt(v, 10, 64)
	}
	if v := q.Get("limit"); v != "" && err == nil {
		f.Limit, err = strconv.Atoi(v)
		if err == nil && (f.Limit <= 0 || f.Limit > 5000) {
			err = errors.New("limit out of range")
		}
	}
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_filter", "bad filter: "+err.Error())
		return
	}
	var recs []broker.AuditRecord
	if err := a.o.Store.View(r.Context(), func(tx broker.Tx) error {
		var err error
		recs, err = tx.ListAudit(f)
		return err
	}); err != nil {
		a.Fail(w, fmt.Errorf("read audit log: %w", err))
		return
	}
	if recs == nil {
		recs = []broker.AuditRecord{}
	}
	WriteJSON(w, http.StatusOK, recs)
}

func (a *API) auditVerify(w http.ResponseWriter, r *http.Request) {
	var rep audit.Report
	var err error
	if a.o.AuditVerifier != nil {
		rep, err = a.o.AuditVerifier.Verify(r.Context())
	} else {
		rep, err = audit.Verify(r.Context(), a.o.Store)
	}
	if err != nil {
		a.Fail(w, fmt.Errorf("verify audit log: %w", err))
		return
	}
	WriteJSON(w, http.StatusOK, rep)
}

func (a *API) auditViews(w http.ResponseWriter, r *http.Request) {
	type v struct {
		Name   string   `json:"name"`
		Title  string   `json:"title"`
		Params []string `json:"params"`
	}
	out := make([]v, len(views.All))
	for i, s := range views.All {
		out[i] = v{s.Name, s.Title, append([]string{}, s.Params...)}
	}
	WriteJSON(w, http.StatusOK, out)
}

// auditView runs a saved view: ?format=json (default) or csv for a
// download; ?download=1 names the file. A download is audited.
func (a *API) auditView(w http.ResponseWriter, r *http.Request) {
	sv, ok := views.Find(r.PathValue("view"))
	if !ok {
		WriteError(w, http.StatusNotFound, "no_view", "no saved view "+r.PathValue("view"))
		return
	}
	q := r.URL.Query()
	params := map[string]string{}
	for _, p := range sv.Params {
		params[p] = strings.TrimSpace(q.Get(p))
		if params[p] == "" {
			WriteError(w, http.StatusBadRequest, "param_required", "this view needs "+p)
			return
		}
	}
	badTime := func() {
		WriteError(w, http.StatusBadRequest, "bad_time", "times must be such as 2026-11-23T14:00")
	}
	args := map[string]string{}
	for k, v := range params {
		args[k] = v
		if slices.Contains(sv.TimeParams, k) {
			t, err := ParseTime(v)
			if err != nil {
				badTime()
				return
			}
			args[k] = t.Format(time.RFC3339Nano)
		}
	}
	var since, until time.Time
	var err error
	if v := q.Get("since"); v != "" {
		since, err = ParseTime(v)
	}
	if v := q.Get("until"); v != "" && err == nil {
		until, err = ParseTime(v)
	}
	if err != nil {
		badTime()
		return
	}
	t, err := views.Runner{Store: a.o.Store, Grants: a.o.Access}.Run(r.Context(), sv, args, since, until)
	if err != nil {
		a.Fail(w, err)
		return
	}
	t.Params = params
	p := principal(r)
	format := q.Get("format")
	if format == "csv" || q.Get("download") != "" {
		a.record(r.Context(), audit.Entry{Actor: p.User, Action: "audit.export", Outcome: broker.OutcomeSuccess,
			Reason: sv.Title, Details: map[string]any{"view": sv.Name, "params": params, "format": format, "rows": len(t.Rows), "via": p.Via}})
	}
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-%s.csv"`, sv.Name))
		w.Header().Set("Cache-Control", "no-store")
		_ = views.WriteCSV(w, t)
	case "", "json":
		if q.Get("download") != "" {
			w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-%s.json"`, sv.Name))
		}
		WriteJSON(w, http.StatusOK, t)
	default:
		WriteError(w, http.StatusBadRequest, "bad_format", "format must be json or csv")
	}
}
