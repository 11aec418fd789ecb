package webui

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/web"
)

// errForbidden is returned by authorize when the caller may not see a
// session; the refusal has been audited.
var errForbidden = errors.New("forbidden")

// getSessionEntry reads a session's index entry.
func (u *UI) getSessionEntry(ctx context.Context, id string) (broker.Session, error) {
	var s broker.Session
	err := u.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		s, err = tx.GetSession(id)
		return err
	})
	return s, err
}

// mayView reports whether p may see session s: security admins and
// auditors see every session, requesters their own, approvers the
// sessions of grants they approved.
func (u *UI) mayView(ctx context.Context, p principal, s broker.Session) bool {
	if p.Admin || s.User == p.User {
		return true
	}
	if s.GrantID == "" {
		return false
	}
	g, err := u.o.Access.GetGrant(ctx, s.GrantID)
	return err == nil && contains(g.Approvers, p.User)
}

// authorize loads session id for a view by the caller and writes the error
// response when it cannot be shown. A refusal is audited as a denied
// recording read with the purpose given.
func (u *UI) authorize(w http.ResponseWriter, r *http.Request, id, purpose string) (broker.Session, bool) {
	p := principalFrom(r.Context())
	s, err := u.getSessionEntry(r.Context(), id)
	if errors.Is(err, broker.ErrNotFound) {
		web.WriteError(w, http.StatusNotFound, "not_found", "no session "+id)
		return s, false
	}
	if err != nil {
		u.fail(w, err)
		return s, false
	}
	if !u.mayView(r.Context(), p, s) {
		u.audit(r.Context(), audit.Entry{Actor: p.User, Action: "session.recording.read", Target: s.Target,
			Outcome: broker.OutcomeDenied, Reason: "not the session's user, an approver of its grant, or security",
			Details: map[string]any{"session_id": s.ID, "user": s.User, "purpose": purpose, "via": "web"}})
		web.WriteError(w, http.StatusForbidden, "forbidden", "you may not open this session's recording")
		return s, false
	}
	return s, true
}

// sessionRow is a session as the table shows it.
type sessionRow struct {
	broker.Session
	DurationMS int64       `json:"duration_ms"`
	Verify     verifyState `json:"verify"`
	Watchable  bool        `json:"watchable"`
}

func (u *UI) row(s broker.Session) sessionRow {
	end := s.EndedAt
	if end.IsZero() {
		end = u.o.Now()
	}
	row := sessionRow{Session: s, DurationMS: max(end.Sub(s.StartedAt), 0).Milliseconds()}
	switch {
	case s.State == broker.SessionLive:
		row.Verify = verifyState{Status: "live"}
		row.Watchable = u.o.Live != nil && u.o.Live.Has(s.ID)
	case u.o.Recordings == nil:
		row.Verify = verifyState{Status: "unavailable"}
	default:
		row.Verify = u.verify.status(s, u.o.Recordings)
	}
	return row
}

// sessionFilter parses the table's filters.
func sessionFilter(r *http.Request) (broker.SessionFilter, error) {
	q := r.URL.Query()
	f := broker.SessionFilter{User: q.Get("user"), Target: q.Get("target"), Protocol: q.Get("protocol"),
		Contains: strings.TrimSpace(q.Get("q")), Limit: 200}
	if s := q.Get("state"); s != "" {
		f.States = []broker.SessionState{broker.SessionState(s)}
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := parseTime(v)
			if err != nil {
				return f, errors.New(name + " must be a time such as 2026-11-23T14:00 or an RFC 3339 time")
			}
			*dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1000 {
			return f, errors.New("limit must be between 1 and 1000")
		}
		f.Limit = n
	}
	return f, nil
}

// parseTime accepts RFC 3339 and the browser's datetime-local form (UTC).
func parseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("bad time")
}

// listSessions answers the sessions table with the caller's view of it.
func (u *UI) listSessions(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	f, err := sessionFilter(r)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "bad_filter", err.Error())
		return
	}
	out, err := u.visibleSessions(r.Context(), p, f)
	if err != nil {
		u.fail(w, err)
		return
	}
	rows := make([]sessionRow, len(out))
	for i, s := range out {
		rows[i] = u.row(s)
	}
	web.WriteJSON(w, http.StatusOK, rows)
}

// visibleSessions lists the sessions matching f that p may see.
func (u *UI) visibleSessions(ctx context.Context, p principal, f broker.SessionFilter) ([]broker.Session, error) {
	list := func(f broker.SessionFilter) ([]broker.Session, error) {
		var out []broker.Session
		err := u.o.Store.View(ctx, func(tx broker.Tx) error {
			var err error
			out, err = tx.ListSessions(f)
			return err
		})
		return out, err
	}
	if p.Admin {
		return list(f)
	}
	seen := map[string]bool{}
	var out []broker.Session
	add := func(ss []broker.Session) {
		for _, s := range ss {
			if !seen[s.ID] {
				seen[s.ID] = true
				out = append(out, s)
			}
		}
	}
	if f.User == "" || f.User == p.User {
		own := f
		own.User = p.User
		ss, err := list(own)
		if err != nil {
			return nil, err
		}
		add(ss)
	}
	grants, err := u.o.Access.ListGrants(ctx, broker.GrantFilter{Target: f.Target, User: f.User, Limit: 500})
	if err != nil {
		return nil, err
	}
	for _, g := range grants {
		if g.User == p.User || !contains(g.Approvers, p.User) {
			continue
		}
		gf := f
		gf.GrantID = g.ID
		ss, err := list(gf)
		if err != nil {
			return nil, err
		}
		add(ss)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// sessionDetail is one session with the request and grant behind it.
type sessionDetail struct {
	sessionRow
	Grant   *broker.Grant   `json:"grant,omitempty"`
	Request *broker.Request `json:"request,omitempty"`
	// CanTerminate is set for security admins on a live session.
	CanTerminate bool `json:"can_terminate"`
}

func (u *UI) getSession(w http.ResponseWriter, r *http.Request) {
	s, ok := u.authorize(w, r, r.PathValue("id"), "metadata")
	if !ok {
		return
	}
	d := sessionDetail{sessionRow: u.row(s)}
	if g, err := u.o.Access.GetGrant(r.Context(), s.GrantID); err == nil {
		d.Grant = &g
		if q, err := u.o.Access.GetRequest(r.Context(), g.RequestID); err == nil {
			d.Request = &q
		}
	}
	d.CanTerminate = principalFrom(r.Context()).Admin && s.State == broker.SessionLive && u.o.Terminator != nil
	web.WriteJSON(w, http.StatusOK, d)
}

// verifySession runs a full verification and returns the report.
func (u *UI) verifySession(w http.ResponseWriter, r *http.Request) {
	s, ok := u.authorize(w, r, r.PathValue("id"), "verify")
	if !ok {
		return
	}
	if u.o.Recordings == nil {
		web.WriteError(w, http.StatusServiceUnavailable, "no_recorder", "recordings are not available on this broker")
		return
	}
	rep, err := u.o.Recordings.Verify(r.Context(), s.ID)
	if err != nil {
		web.WriteError(w, http.StatusBadGateway, "verify_failed", "the recording store could not be read: "+err.Error())
		return
	}
	u.verify.put(s, rep)
	outcome := broker.OutcomeSuccess
	if !rep.Intact {
		outcome = broker.OutcomeError
	}
	p := principalFrom(r.Context())
	u.audit(r.Context(), audit.Entry{Actor: p.User, Action: "session.verify", Target: s.Target, Outcome: outcome,
		Reason: rep.Verdict, Details: map[string]any{"session_id": s.ID, "via": "web"}})
	web.WriteJSON(w, http.StatusOK, rep)
}

type terminateBody struct {
	Reason string `json:"reason"`
}

// terminate ends a live session: security role only, reason required.
func (u *UI) terminate(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	id := r.PathValue("id")
	var in terminateBody
	if err := web.DecodeJSON(r, &in); err != nil || strings.TrimSpace(in.Reason) == "" {
		web.WriteError(w, http.StatusBadRequest, "reason_required", "terminating a session needs a reason")
		return
	}
	reason := strings.TrimSpace(in.Reason)
	if !p.Admin {
		u.audit(r.Context(), audit.Entry{Actor: p.User, Action: "session.terminate", Outcome: broker.OutcomeDenied,
			Reason: "not a security admin", Details: map[string]any{"session_id": id, "via": "web"}})
		web.WriteError(w, http.StatusForbidden, "forbidden", "only security staff may terminate sessions")
		return
	}
	if u.o.Terminator == nil {
		web.WriteError(w, http.StatusServiceUnavailable, "no_proxies", "no proxy runs on this broker")
		return
	}
	s, err := u.getSessionEntry(r.Context(), id)
	if err != nil && !errors.Is(err, broker.ErrNotFound) {
		u.fail(w, err)
		return
	}
	if !u.o.Terminator.Terminate(id, "terminated by "+p.User+": "+reason) {
		web.WriteError(w, http.StatusNotFound, "not_live", "no live session "+id+" on this broker")
		return
	}
	u.audit(r.Context(), audit.Entry{Actor: p.User, Action: "session.terminate", Target: s.Target,
		Outcome: broker.OutcomeSuccess, Reason: reason, Details: map[string]any{"session_id": id, "user": s.User, "via": "web"}})
	web.WriteJSON(w, http.StatusOK, map[string]string{"terminated": id})
}

// listLive lists the running sessions the caller may see.
func (u *UI) listLive(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	ss, err := u.visibleSessions(r.Context(), p, broker.SessionFilter{States: []broker.SessionState{broker.SessionLive}, Limit: 500})
	if err != nil {
		u.fail(w, err)
		return
	}
	rows := make([]sessionRow, len(ss))
	for i, s := range ss {
		rows[i] = u.row(s)
	}
	web.WriteJSON(w, http.StatusOK, rows)
}
