package kri

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/custos-pam/custos/broker"
)

// The indicators of requests, approvals, grants and sessions.

func activeGrants(in *input) (*float64, []Row, []Record) {
	var active []broker.Grant
	for _, g := range in.grants {
		if g.State == broker.GrantActive && g.ActiveAt(in.now) {
			active = append(active, g)
		}
	}
	// Soonest to end first.
	sort.SliceStable(active, func(i, j int) bool { return active[i].EffectiveEnd().Before(active[j].EffectiveEnd()) })
	recs := make([]Record, len(active))
	for i, g := range active {
		recs[i] = grantRecord(g, "remaining "+g.EffectiveEnd().Sub(in.now).Round(time.Second).String())
	}
	return num(float64(len(recs))), nil, recs
}

// monthStart is the first instant of t's calendar month (UTC).
func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func sessionsThisMonth(in *input) (*float64, []Row, []Record) {
	from := monthStart(in.now)
	per := map[string]*Row{}
	var recs []Record
	for _, s := range in.sessions {
		if s.StartedAt.Before(from) {
			continue
		}
		end := s.EndedAt
		if end.IsZero() {
			end = in.now
		}
		d := end.Sub(s.StartedAt)
		r := per[s.Target]
		if r == nil {
			r = &Row{Key: s.Target}
			per[s.Target] = r
		}
		r.Count++
		r.Seconds += d.Seconds()
		recs = append(recs, sessionRecord(s, fmt.Sprintf("%s %s, %s", s.Protocol, s.State, d.Round(time.Second)), sessionLink(s.ID)))
	}
	rows := make([]Row, 0, len(per))
	for _, r := range per {
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
	return num(float64(len(recs))), rows, recs
}

// grantsWithoutTicket counts grants (active, or started within the
// lookback) that carry no ticket although their role's policy, as
// configured now, requires one. Break-glass grants come from an unseal
// with an incident, not a request, and are counted as unseals instead.
func grantsWithoutTicket(in *input) (*float64, []Row, []Record) {
	var recs []Record
	for _, g := range in.grants {
		if g.BreakGlass != "" || g.Ticket != "" {
			continue
		}
		t, ok := in.cfg.FindTarget(g.Target)
		if !ok {
			continue
		}
		role, ok := t.FindRole(g.Role)
		if !ok || !role.Policy.RequireTicket {
			continue
		}
		recs = append(recs, grantRecord(g, "no ticket; policy requires one"))
	}
	return num(float64(len(recs))), nil, recs
}

// recentRequests are the requests created within the lookback.
func recentRequests(in *input) []broker.Request {
	var out []broker.Request
	for _, r := range in.requests {
		if !r.CreatedAt.Before(in.since) {
			out = append(out, r)
		}
	}
	return out
}

func rubberStamps(in *input) (*float64, []Row, []Record) {
	limit := in.cfg.Indicators.RubberStampOrDefault()
	var recs []Record
	for _, r := range recentRequests(in) {
		for _, d := range r.Approvals {
			if took := d.At.Sub(r.CreatedAt); took < limit {
				recs = append(recs, requestRecord(r, fmt.Sprintf("%s approved in %s", d.By, took.Round(time.Second))))
			}
		}
	}
	return num(float64(len(recs))), nil, recs
}

// collusionPairs counts pairs of users who approved each other's
// requests within the lookback: A approved one of B's and B one of A's.
func collusionPairs(in *input) (*float64, []Row, []Record) {
	type edge struct{ approver, requester string }
	byEdge := map[edge][]broker.Request{}
	for _, r := range recentRequests(in) {
		for _, d := range r.Approvals {
			e := edge{d.By, r.User}
			if !slices.ContainsFunc(byEdge[e], func(x broker.Request) bool { return x.ID == r.ID }) {
				byEdge[e] = append(byEdge[e], r)
			}
		}
	}
	var rows []Row
	var recs []Record
	for e, reqs := range byEdge {
		if e.approver >= e.requester { // each pair once, from its lesser name
			continue
		}
		back, ok := byEdge[edge{e.requester, e.approver}]
		if !ok {
			continue
		}
		rows = append(rows, Row{Key: e.approver + " ↔ " + e.requester, Count: len(reqs) + len(back)})
		for _, r := range reqs {
			recs = append(recs, requestRecord(r, e.approver+" approved "+e.requester))
		}
		for _, r := range back {
			recs = append(recs, requestRecord(r, e.requester+" approved "+e.approver))
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	return num(float64(len(rows))), rows, recs
}

// latencies are the approved requests of the lookback, slowest first,
// with the time from request to decision.
func latencies(in *input) ([]time.Duration, []Record) {
	type lr struct {
		d time.Duration
		r broker.Request
	}
	var all []lr
	for _, r := range recentRequests(in) {
		if r.State != broker.RequestApproved || r.DecidedAt.IsZero() {
			continue
		}
		all = append(all, lr{r.DecidedAt.Sub(r.CreatedAt), r})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].d > all[j].d })
	ds := make([]time.Duration, len(all))
	recs := make([]Record, len(all))
	for i, x := range all {
		ds[i] = x.d
		recs[i] = requestRecord(x.r, "decided after "+x.d.Round(time.Second).String())
	}
	slices.Sort(ds)
	return ds, recs
}

// quantile is the nearest-rank quantile of sorted ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(ds))+0.999999) - 1
	i = max(0, min(i, len(ds)-1))
	return ds[i]
}

func latencyQuantile(q float64) func(in *input) (*float64, []Row, []Record) {
	return func(in *input) (*float64, []Row, []Record) {
		ds, recs := latencies(in)
		if len(ds) == 0 {
			return nil, nil, nil
		}
		return num(quantile(ds, q).Seconds()), nil, recs
	}
}
