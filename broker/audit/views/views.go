// Package views holds the audit log's saved views: the usual questions of
// an inspector ("all grants for a target", "who could reach it at a time",
// "all break-glass unseals", ...) as data, and the one runner that turns
// a view and its parameters into a table the API, the web UI and the CLI
// show, download as CSV or JSON, alike.
package views

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Source is where a view's rows come from.
type Source string

// The sources.
const (
	// FromAudit: audit records under Prefix whose action matches one of
	// Actions (path.Match patterns, "*" for any run of characters).
	FromAudit Source = "audit"
	// FromGrants: every grant of the "target" parameter's target.
	FromGrants Source = "grants"
	// FromAccessAt: the grants of "target" active at "at", with the
	// sessions that ran under them then.
	FromAccessAt Source = "access-at"
	// FromTerminated: sessions in state terminated.
	FromTerminated Source = "sessions-terminated"
)

// View is one saved view.
type View struct {
	Name, Title string
	// Params are the query parameters the view needs besides since and
	// until, which every view takes.
	Params []string
	// TimeParams are those of Params that are times.
	TimeParams []string
	Source     Source
	// Prefix and Actions select audit records (FromAudit).
	Prefix  string
	Actions []string
	// ActorParam names the parameter that filters the records' actor.
	ActorParam string
}

// All are the saved views, in the order the UI lists them. Audit action
// names in them follow docs/audit-log.md.
var All = []View{
	{Name: "grants-for-target", Title: "All grants for a target", Params: []string{"target"}, Source: FromGrants},
	{Name: "access-at", Title: "Who could reach a target at a time", Params: []string{"target", "at"},
		TimeParams: []string{"at"}, Source: FromAccessAt},
	{Name: "breakglass-unseals", Title: "All break-glass unseals", Source: FromAudit,
		Prefix: "breakglass.", Actions: []string{"breakglass.*unseal*"}},
	{Name: "approvals-by", Title: "All approvals by a person", Params: []string{"person"}, Source: FromAudit,
		Prefix: "request.", Actions: []string{"request.approve", "request.deny"}, ActorParam: "person"},
	{Name: "sessions-terminated", Title: "All sessions terminated", Source: FromTerminated},
	{Name: "recording-access", Title: "All recording views and downloads", Source: FromAudit,
		Prefix: "session.", Actions: []string{"session.recording.read*", "session.evidence.export", "session.export*"}},
}

// Find returns the view named name.
func Find(name string) (View, bool) {
	for _, v := range All {
		if v.Name == name {
			return v, true
		}
	}
	return View{}, false
}

// Table is a view's result: named columns and string cells, the same for
// the page, CSV and JSON.
type Table struct {
	View    string            `json:"view"`
	Title   string            `json:"title"`
	Params  map[string]string `json:"params"`
	Columns []string          `json:"columns"`
	Rows    [][]string        `json:"rows"`
}

// Grants answers the grant questions; *access.Service implements it.
type Grants interface {
	ListGrants(ctx context.Context, f broker.GrantFilter) ([]broker.Grant, error)
	AccessAt(ctx context.Context, target string, at time.Time) ([]broker.Grant, error)
}

// Runner runs views against the store and the grants.
type Runner struct {
	Store  broker.Store
	Grants Grants
}

// Run runs view v with its parameters (already checked to be present;
// time parameters in RFC 3339) over [since, until) (zero for open ends).
func (r Runner) Run(ctx context.Context, v View, params map[string]string, since, until time.Time) (Table, error) {
	var (
		t   Table
		err error
	)
	switch v.Source {
	case FromGrants:
		t, err = r.grants(ctx, params["target"], since, until)
	case FromAccessAt:
		var at time.Time
		if at, err = time.Parse(time.RFC3339Nano, params["at"]); err != nil {
			return Table{}, broker.Refuse(broker.KindInvalid, "bad_time", "at must be a time such as 2026-11-23T14:00")
		}
		t, err = r.accessAt(ctx, params["target"], at)
	case FromTerminated:
		t, err = r.terminated(ctx, since, until)
	case FromAudit:
		f := broker.AuditFilter{ActionPrefix: v.Prefix, Since: since, Until: until}
		if v.ActorParam != "" {
			f.Actor = params[v.ActorParam]
		}
		t, err = r.audit(ctx, f, v.Actions)
	default:
		return Table{}, broker.Refuse(broker.KindNotFound, "no_view", "view %s has no source", v.Name)
	}
	if err != nil {
		return Table{}, err
	}
	t.View, t.Title, t.Params = v.Name, v.Title, params
	if t.Rows == nil {
		t.Rows = [][]string{}
	}
	return t, nil
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (r Runner) grants(ctx context.Context, target string, since, until time.Time) (Table, error) {
	gs, err := r.Grants.ListGrants(ctx, broker.GrantFilter{Target: target, Limit: 5000})
	if err != nil {
		return Table{}, err
	}
	t := Table{Columns: []string{"grant_id", "user", "role", "starts_at", "ends_at", "state", "approvers", "reason", "ticket", "revoked_by", "revoke_reason"}}
	for _, g := range gs {
		if !since.IsZero() && g.EffectiveEnd().Before(since) || !until.IsZero() && !g.StartsAt.Before(until) {
			continue
		}
		t.Rows = append(t.Rows, []string{g.ID, g.User, g.Role, ts(g.StartsAt), ts(g.EffectiveEnd()), string(g.State),
			strings.Join(g.Approvers, " "), g.Reason, g.Ticket, g.RevokedBy, g.RevokeReason})
	}
	return t, nil
}

func (r Runner) accessAt(ctx context.Context, target string, at time.Time) (Table, error) {
	gs, err := r.Grants.AccessAt(ctx, target, at)
	if err != nil {
		return Table{}, err
	}
	t := Table{Columns: []string{"user", "role", "grant_id", "starts_at", "ends_at", "approvers", "reason", "ticket", "sessions_then"}}
	for _, g := range gs {
		var ss []broker.Session
		_ = r.Store.View(ctx, func(tx broker.Tx) error {
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

func (r Runner) terminated(ctx context.Context, since, until time.Time) (Table, error) {
	var ss []broker.Session
	err := r.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		ss, err = tx.ListSessions(broker.SessionFilter{States: []broker.SessionState{broker.SessionTerminated},
			Since: since, Until: until, Limit: 5000})
		return err
	})
	if err != nil {
		return Table{}, err
	}
	t := Table{Columns: []string{"session_id", "user", "target", "role", "protocol", "started_at", "ended_at", "ended_by_and_reason", "grant_id"}}
	for _, s := range ss {
		t.Rows = append(t.Rows, []string{s.ID, s.User, s.Target, s.Role, s.Protocol, ts(s.StartedAt), ts(s.EndedAt), s.EndReason, s.GrantID})
	}
	return t, nil
}

// matches reports whether action matches one of the patterns.
func matches(action string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, action); ok {
			return true
		}
	}
	return false
}

// audit lists the audit records matching f (all pages, up to 20 000) whose
// action matches one of actions.
func (r Runner) audit(ctx context.Context, f broker.AuditFilter, actions []string) (Table, error) {
	t := Table{Columns: []string{"seq", "time", "actor", "action", "target", "outcome", "reason", "details", "hash"}}
	f.Limit = 1000
	for n := 0; n < 20; n++ {
		var recs []broker.AuditRecord
		err := r.Store.View(ctx, func(tx broker.Tx) error {
			var err error
			recs, err = tx.ListAudit(f)
			return err
		})
		if err != nil {
			return t, err
		}
		for _, rec := range recs {
			if matches(rec.Action, actions) {
				t.Rows = append(t.Rows, []string{strconv.FormatInt(rec.Seq, 10), ts(rec.Time), rec.Actor, rec.Action, rec.Target,
					rec.Outcome, rec.Reason, compact(rec.Details), rec.Hash})
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

// WriteCSV writes the table; cells that a spreadsheet would run as a
// formula are prefixed with a quote.
func WriteCSV(w io.Writer, t Table) error {
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
	return cw.Error()
}
