package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Who saw which fields unmasked (docs/data-protection.md): GET
// /api/v1/unmasked lists the sessions of time-boxed unmask grants, newest
// first, from the audit log alone: each session.start record whose details
// name unmasked classifications, with the columns the proxy audited as
// returned in clear (postgres.unmasked) and the grant's approvers.
// Security staff and auditors only (it reads the audit log).

// Audit actions the view reads.
const (
	auditSessionStart = "session.start"
	auditUnmasked     = broker.AuditUnmasked
)

// unmaskedWindow is the default period; unmaskedPage, how many audit
// records one store read takes.
const (
	unmaskedWindow = 30 * 24 * time.Hour
	unmaskedPage   = 5000
)

// UnmaskedColumn is a classified column a session received in clear.
type UnmaskedColumn struct {
	Classification string `json:"classification"`
	// Column is schema.table.column.
	Column string `json:"column"`
	// FirstAt is when the session first returned it.
	FirstAt time.Time `json:"first_at"`
}

// UnmaskedSession is one session of an unmask grant.
type UnmaskedSession struct {
	SessionID string `json:"session_id"`
	GrantID   string `json:"grant_id"`
	User      string `json:"user"`
	Target    string `json:"target"`
	Role      string `json:"role"`
	// Unmasked are the classifications the grant passes in clear.
	Unmasked  []string  `json:"unmasked"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// Columns are those the session actually returned in clear; empty
	// when no statement returned an unmasked column.
	Columns     []UnmaskedColumn `json:"columns"`
	Approvers   []string         `json:"approvers"`
	Reason      string           `json:"reason,omitempty"`
	Ticket      string           `json:"ticket,omitempty"`
	GrantEndsAt time.Time        `json:"grant_ends_at,omitzero"`
	// Link is the session's page (its statement timeline).
	Link string `json:"link"`
}

// UnmaskedList is the answer of GET /api/v1/unmasked.
type UnmaskedList struct {
	Since    time.Time         `json:"since"`
	Until    time.Time         `json:"until"`
	Sessions []UnmaskedSession `json:"sessions"`
	// Truncated is set when more sessions matched than limit.
	Truncated bool `json:"truncated"`
}

// listUnmasked answers GET /api/v1/unmasked?since=&until=&limit=: the
// sessions of unmask grants that started in [since, until) (default: the
// last 30 days), at most limit (default 200, at most 1000).
func (a *API) listUnmasked(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := a.o.Now().UTC()
	out := UnmaskedList{Since: now.Add(-unmaskedWindow), Until: now, Sessions: []UnmaskedSession{}}
	limit := 200
	var err error
	for name, dst := range map[string]*time.Time{"since": &out.Since, "until": &out.Until} {
		if v := q.Get(name); v != "" && err == nil {
			*dst, err = ParseTime(v)
		}
	}
	if v := q.Get("limit"); v != "" && err == nil {
		limit, err = strconv.Atoi(v)
		if err == nil && (limit <= 0 || limit > 1000) {
			err = errors.New("limit out of range")
		}
	}
	if err == nil && !out.Since.Before(out.Until) {
		err = errors.New("since must be before until")
	}
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_filter", "bad filter: "+err.Error())
		return
	}
	if err := a.o.Store.View(r.Context(), func(tx broker.Tx) error {
		return unmaskedSessions(tx, &out, limit)
	}); err != nil {
		a.Fail(w, fmt.Errorf("unmasked sessions: %w", err))
		return
	}
	WriteJSON(w, http.StatusOK, out)
}

// auditDetails are the keys of session records the view reads.
type auditDetails struct {
	SessionID string           `json:"session_id"`
	GrantID   string           `json:"grant_id"`
	Unmasked  []string         `json:"unmasked"`
	Columns   []UnmaskedColumn `json:"columns"`
}

// eachAudit calls fn for every record of action in [since, until), in
// order.
func eachAudit(tx broker.Tx, action string, since, until time.Time, fn func(broker.AuditRecord, auditDetails)) error {
	var after int64
	for {
		recs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: action, Since: since, Until: until, AfterSeq: after, Limit: unmaskedPage})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Action != action {
				continue
			}
			var d auditDetails
			if len(rec.Details) > 0 && json.Unmarshal(rec.Details, &d) != nil {
				continue
			}
			fn(rec, d)
		}
		if len(recs) < unmaskedPage {
			return nil
		}
		after = recs[len(recs)-1].Seq
	}
}

func unmaskedSessions(tx broker.Tx, out *UnmaskedList, limit int) error {
	var all []UnmaskedSession
	byID := map[string]int{}
	if err := eachAudit(tx, auditSessionStart, out.Since, out.Until, func(rec broker.AuditRecord, d auditDetails) {
		if len(d.Unmasked) == 0 || d.SessionID == "" {
			return
		}
		byID[d.SessionID] = len(all)
		all = append(all, UnmaskedSession{SessionID: d.SessionID, GrantID: d.GrantID, User: rec.Actor, Target: rec.Target,
			Unmasked: d.Unmasked, StartedAt: rec.Time.UTC(), Columns: []UnmaskedColumn{}, Approvers: []string{},
			Link: "/ui/sessions/" + url.PathEscape(d.SessionID)})
	}); err != nil {
		return err
	}
	if len(all) == 0 {
		return nil
	}
	// Columns are audited while the session runs, after its start and
	// possibly after until.
	if err := eachAudit(tx, auditUnmasked, out.Since, time.Time{}, func(rec broker.AuditRecord, d auditDetails) {
		i, ok := byID[d.SessionID]
		if !ok {
			return
		}
		s := &all[i]
		for _, c := range d.Columns {
			if !slices.ContainsFunc(s.Columns, func(x UnmaskedColumn) bool { return x.Column == c.Column }) {
				c.FirstAt = rec.Time.UTC()
				s.Columns = append(s.Columns, c)
			}
		}
	}); err != nil {
		return err
	}
	slices.Reverse(all)
	if len(all) > limit {
		all, out.Truncated = all[:limit], true
	}
	for i := range all {
		s := &all[i]
		if g, err := tx.GetGrant(s.GrantID); err == nil {
			s.Role, s.Approvers, s.Reason, s.Ticket, s.GrantEndsAt = g.Role, g.Approvers, g.Reason, g.Ticket, g.EndsAt
		} else if !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		if ses, err := tx.GetSession(s.SessionID); err == nil {
			s.EndedAt = ses.EndedAt
			if s.Role == "" {
				s.Role = ses.Role
			}
		} else if !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		if s.Approvers == nil {
			s.Approvers = []string{}
		}
	}
	out.Sessions = all
	return nil
}
