package webui

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/web"
)

// auditList answers the raw log with filters: actor, target, action
// (prefix), since, until, after (seq), limit.
func (u *UI) auditList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := broker.AuditFilter{Actor: q.Get("actor"), Target: q.Get("target"), ActionPrefix: q.Get("action"), Limit: 200}
	var err error
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" && err == nil {
			*dst, err = parseTime(v)
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
		web.WriteError(w, http.StatusBadRequest, "bad_filter", "bad filter: "+err.Error())
		return
	}
	recs, err := u.listAudit(r.Context(), f)
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, recs)
}

func (u *UI) listAudit(ctx context.Context, f broker.AuditFilter) ([]broker.AuditRecord, error) {
	var recs []broker.AuditRecord
	err := u.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		recs, err = tx.ListAudit(f)
		return err
	})
	if recs == nil {
		recs = []broker.AuditRecord{}
	}
	return recs, err
}

func (u *UI) auditVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := audit.Verify(r.Context(), u.o.Store)
	if err != nil {
		u.fail(w, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, rep)
}

// table is a saved view's result: named columns and string cells, the
// same for the page, CSV and JSON.
type table struct {
	View    string            `json:"view"`
	Title   string            `json:"title"`
	Params  map[string]string `json:"params"`
	Columns []string          `json:"columns"`
	Rows    [][]string        `json:"rows"`
}

// savedView is one of the inspector's usual questions.
type savedView struct {
	Name, Title string
	// Params are the query parameters the view needs (besides since and
	// until, which every view takes).
	Params []string
	run    func(u *UI, ctx context.Context, p map[string]string, since, until time.Time) (table, error)
}

var savedViews = []savedView{
	{Name: "grants-for-target", Title: "All grants for a target", Params: []string{"target"}, run: (*UI).viewGrants},
	{Name: "access-at", Title: "Who could reach a target at a time", Params: []string{"target", "at"}, run: (*UI).viewAccessAt},
	{Name: "breakglass-unseals", Title: "All break-glass unseals", run: (*UI).viewUnseals},
	{Name: "approvals-by", Title: "All approvals by a person", Params: []string{"person"}, run: (*UI).viewApprovals},
	{Name: "sessions-terminated", Title: "All sessions terminated", run: (*UI).viewTerminated},
	{Name: "recording-access", Title: "All recording views and downloads", run: (*UI).viewRecordingAccess},
}

func (u *UI) auditViews(w http.ResponseWriter, r *http.Request) {
	type v struct {
		Name   string   `json:"name"`
		Title  string   `json:"title"`
		Params []string `json:"params"`
	}
	out := make([]v, len(savedViews))
	for i, s := range savedViews {
		out[i] = v{s.Name, s.Title, append([]string{}, s.Params...)}
	}
	web.WriteJSON(w, http.StatusOK, out)
}

// auditView runs a saved view: ?format=json (default) or csv for a
// download; ?download=1 names the file.
func (u *UI) auditView(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("view")
	var sv *savedView
	for i := range savedViews {
		if savedViews[i].Name == name {
			sv = &savedViews[i]
		}
	}
	if sv == nil {
		web.WriteError(w, http.StatusNotFound, "no_view", "no saved view "+name)
		return
	}
	q := r.URL.Query()
	params := map[string]string{}
	for _, p := range sv.Params {
		params[p] = strings.TrimSpace(q.Get(p))
		if params[p] == "" {
			web.WriteError(w, http.StatusBadRequest, "param_required", "this view needs "+p)
			return
		}
	}
	var since, until time.Time
	var err error
	if v := q.Get("since"); v != "" {
		since, err = parseTime(v)
	}
	if v := q.Get("until"); v != "" && err == nil {
		until, err = parseTime(v)
	}
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "bad_time", "since and until must be times such as 2026-11-23T14:00")
		return
	}
	t, err := sv.run(u, r.Context(), params, since, until)
	if err != nil {
		var he httpError
		if errors.As(err, &he) {
			web.WriteError(w, he.status, he.code, he.msg)
			return
		}
		u.fail(w, err)
		return
	}
	t.View, t.Title, t.Params = sv.Name, sv.Title, params
	if t.Rows == nil {
		t.Rows = [][]string{}
	}
	p := principalFrom(r.Context())
	format := q.Get("format")
	if format == "csv" || q.Get("download") != "" {
		u.audit(r.Context(), audit.Entry{Actor: p.User, Action: "audit.export", Outcome: broker.OutcomeSuccess,
			Reason: sv.Title, Details: map[string]any{"view": sv.Name, "params": params, "format": format, "rows": len(t.Rows)}})
	}
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-%s.csv"`, sv.Name))
		w.Header().Set("Cache-Control", "no-store")
		writeCSV(w, t)
	case "", "json":
		if q.Get("download") != "" {
			w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-%s.json"`, sv.Name))
		}
		web.WriteJSON(w, http.StatusOK, t)
	default:
		web.WriteError(w, http.StatusBadRequest, "bad_format", "format must be json or csv")
	}
}

// writeCSV writes the table; cells that a spreadsheet would run as a
// formula are prefixed with a quote.
func writeCSV(w http.ResponseWriter, t table) {
	cw := csv.NewWriter(w)
	_ = cw.Write(t.Columns)
	for _, row := range t.Rows {
		safe := make([]string, len(row))
		for i, c := range row {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				c = "'" + c
			}
			safe[i] = c
		}
		_ = cw.Write(safe)
	}
	cw.Flush()
}

type httpError struct {
	status    int
	code, msg string
}

func (e httpError) Error() string { return e.msg }

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (u *UI) viewGrants(ctx context.Context, p map[string]string, since, until time.Time) (table, error) {
	gs, err := u.o.Access.ListGrants(ctx, broker.GrantFilter{Target: p["target"], Limit: 5000})
	if err != nil {
		return table{}, err
	}
	t := table{Columns: []string{"grant_id", "user", "role", "starts_at", "ends_at", "state", "approvers", "reason", "ticket", "revoked_by", "revoke_reason"}}
	for _, g := range gs {
		if !since.IsZero() && g.EffectiveEnd().Before(since) || !until.IsZero() && !g.StartsAt.Before(until) {
			continue
		}
		t.Rows = append(t.Rows, []string{g.ID, g.User, g.Role, ts(g.StartsAt), ts(g.EffectiveEnd()), string(g.State),
			strings.Join(g.Approvers, " "), g.Reason, g.Ticket, g.RevokedBy, g.RevokeReason})
	}
	return t, nil
}

func (u *UI) viewAccessAt(ctx context.Context, p map[string]string, _, _ time.Time) (table, error) {
	at, err := parseTime(p["at"])
	if err != nil {
		return table{}, httpError{http.StatusBadRequest, "bad_time", "at must be a time such as 2026-11-23T14:00"}
	}
	gs, err := u.o.Access.AccessAt(ctx, p["target"], at)
	if err != nil {
		return table{}, err
	}
	t := table{Columns: []string{"user", "role", "grant_id", "starts_at", "ends_at", "approvers", "reason", "ticket", "sessions_then"}}
	for _, g := range gs {
		var ss []broker.Session
		_ = u.o.Store.View(ctx, func(tx broker.Tx) error {
			var err error
			ss, err = tx.ListSessions(broker.SessionFilter{GrantID: g.ID, Limit: 100})
			return err
		})
		var ids []string
		for _, s := range ss {
			if !s.StartedAt.After(at) && (s.EndedAt.IsZero() || s.EndedAt.After(at)) {
				ids = append(ids, s.ID)
			}
		}
		t.Rows = append(t.Rows, []string{g.User, g.Role, g.ID, ts(g.StartsAt), ts(g.EffectiveEnd()),
			strings.Join(g.Approvers, " "), g.Reason, g.Ticket, strings.Join(ids, " ")})
	}
	return t, nil
}

// auditTable lists audit records matching f (all pages) that keep accepts.
func (u *UI) auditTable(ctx context.Context, f broker.AuditFilter, keep func(broker.AuditRecord) bool) (table, error) {
	t := table{Columns: []string{"seq", "time", "actor", "action", "target", "outcome", "reason", "details", "hash"}}
	f.Limit = 1000
	for n := 0; n < 20; n++ {
		recs, err := u.listAudit(ctx, f)
		if err != nil {
			return t, err
		}
		for _, r := range recs {
			if keep == nil || keep(r) {
				t.Rows = append(t.Rows, []string{strconv.FormatInt(r.Seq, 10), ts(r.Time), r.Actor, r.Action, r.Target,
					r.Outcome, r.Reason, compact(r.Details), r.Hash})
			}
		}
		if len(recs) < f.Limit {
			break
		}
		f.AfterSeq = recs[len(recs)-1].Seq
	}
	return t, nil
}

func compact(b json.RawMessage) string {
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

func (u *UI) viewUnseals(ctx context.Context, _ map[string]string, since, until time.Time) (table, error) {
	return u.auditTable(ctx, broker.AuditFilter{ActionPrefix: "breakglass.", Since: since, Until: until},
		func(r broker.AuditRecord) bool { return strings.Contains(r.Action, "unseal") })
}

func (u *UI) viewApprovals(ctx context.Context, p map[string]string, since, until time.Time) (table, error) {
	return u.auditTable(ctx, broker.AuditFilter{Actor: p["person"], ActionPrefix: "request.", Since: since, Until: until},
		func(r broker.AuditRecord) bool { return r.Action == "request.approve" || r.Action == "request.deny" })
}

func (u *UI) viewTerminated(ctx context.Context, _ map[string]string, since, until time.Time) (table, error) {
	var ss []broker.Session
	err := u.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		ss, err = tx.ListSessions(broker.SessionFilter{States: []broker.SessionState{broker.SessionTerminated},
			Since: since, Until: until, Limit: 5000})
		return err
	})
	if err != nil {
		return table{}, err
	}
	t := table{Columns: []string{"session_id", "user", "target", "role", "protocol", "started_at", "ended_at", "ended_by_and_reason", "grant_id"}}
	for _, s := range ss {
		t.Rows = append(t.Rows, []string{s.ID, s.User, s.Target, s.Role, s.Protocol, ts(s.StartedAt), ts(s.EndedAt), s.EndReason, s.GrantID})
	}
	return t, nil
}

func (u *UI) viewRecordingAccess(ctx context.Context, _ map[string]string, since, until time.Time) (table, error) {
	return u.auditTable(ctx, broker.AuditFilter{ActionPrefix: "session.", Since: since, Until: until},
		func(r broker.AuditRecord) bool {
			return strings.HasPrefix(r.Action, "session.recording.read") || r.Action == "session.evidence.export" ||
				strings.HasPrefix(r.Action, "session.export")
		})
}
