package kri

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/retrieval"
)

// The indicators of evidence: recordings and their verification,
// break-glass unseals, drills and retrieval.

// VerifyGrace is how long after a session ends its recording may still
// be unverified before it counts as a session without a verified
// recording: the evaluator verifies ended sessions on its next rounds.
const VerifyGrace = 15 * time.Minute

// verdict is the latest verification of one session in the audit log.
type verdict struct {
	rec broker.AuditRecord
	ok  bool
}

// verdicts are the latest session.verify record of each session within
// the audit window (from `custos verify`, the web UI or the evaluator).
func verdicts(in *input) map[string]verdict {
	out := map[string]verdict{}
	for _, a := range in.audit {
		if a.Action != ActionSessionVerify {
			continue
		}
		var d struct {
			SessionID string `json:"session_id"`
		}
		if json.Unmarshal(a.Details, &d) != nil || d.SessionID == "" {
			continue
		}
		out[d.SessionID] = verdict{rec: a, ok: a.Outcome == broker.OutcomeSuccess}
	}
	return out
}

// endedInWindow are the sessions that ended within the lookback and at
// least VerifyGrace ago.
func endedInWindow(in *input) []broker.Session {
	var out []broker.Session
	for _, s := range in.sessions {
		if s.State == broker.SessionLive || s.EndedAt.IsZero() {
			continue
		}
		if s.EndedAt.Before(in.since) || s.EndedAt.After(in.now.Add(-VerifyGrace)) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// sessionsWithoutRecording counts ended sessions with no stored, sealed
// recording (no manifest in the session index) or whose recording has no
// passing verification.
func sessionsWithoutRecording(in *input) (*float64, []Row, []Record) {
	vs := verdicts(in)
	var recs []Record
	for _, s := range endedInWindow(in) {
		switch v, ok := vs[s.ID]; {
		case s.ManifestHash == "":
			recs = append(recs, sessionRecord(s, "no sealed recording stored", sessionLink(s.ID)))
		case !ok:
			recs = append(recs, sessionRecord(s, "recording never verified", verifyLink(s.ID)))
		case !v.ok:
			recs = append(recs, sessionRecord(s, "last verification failed", verifyLink(s.ID)))
		}
	}
	return num(float64(len(recs))), nil, recs
}

// recordingsFailingVerification counts sessions whose latest
// verification within the window did not pass.
func recordingsFailingVerification(in *input) (*float64, []Row, []Record) {
	vs := verdicts(in)
	var recs []Record
	for id, v := range vs {
		if v.ok || v.rec.Time.Before(in.since) {
			continue
		}
		recs = append(recs, Record{Kind: KindSession, ID: id, Seq: v.rec.Seq, Target: v.rec.Target, At: v.rec.Time,
			Detail: fmt.Sprintf("%s (audit #%d)", v.rec.Reason, v.rec.Seq), Link: verifyLink(id)})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	return num(float64(len(recs))), nil, recs
}

// unseals counts real (not drill) break-glass unseal requests within the
// lookback.
func unseals(in *input) (*float64, []Row, []Record) {
	var recs []Record
	for _, a := range in.audit {
		if a.Action != "breakglass.unseal" || a.Outcome != broker.OutcomeSuccess || a.Time.Before(in.since) {
			continue
		}
		var d struct {
			Account string `json:"account"`
			Drill   string `json:"drill"`
		}
		_ = json.Unmarshal(a.Details, &d)
		if d.Drill != "" {
			continue
		}
		recs = append(recs, auditRecord(a, "unseal of "+d.Account+": "+a.Reason))
	}
	return num(float64(len(recs))), nil, recs
}

func drillsOverdue(in *input) (*float64, []Row, []Record) {
	if in.drills == nil {
		return nil, nil, nil
	}
	var recs []Record
	for _, s := range in.drills.standings {
		if !s.Due.Overdue {
			continue
		}
		r := Record{Kind: KindDrill, ID: s.Account, Target: s.Target, At: s.Due.NextDue,
			Detail: "drill of " + s.Account + " due " + s.Due.NextDue.Format(time.RFC3339), Link: "/ui/breakglass"}
		if s.Last != nil {
			r.ID, r.Link = s.Last.ID, drillLink(s.Last.ID)
			r.Detail += ", last " + s.Last.Outcome
		}
		recs = append(recs, r)
	}
	return num(float64(len(recs))), nil, recs
}

func drillFailuresQuarter(in *input) (*float64, []Row, []Record) {
	if in.drills == nil {
		return nil, nil, nil
	}
	var recs []Record
	for _, d := range in.drills.quarter {
		if d.Outcome != breakglass.DrillFailed {
			continue
		}
		recs = append(recs, Record{Kind: KindDrill, ID: d.ID, User: d.StartedBy, Target: d.Account, At: d.StartedAt,
			Detail: "failed: " + d.Reason, Link: drillLink(d.ID)})
	}
	return num(float64(len(recs))), nil, recs
}

// retrievalPassRate is the share of the retrieval drill's questions
// answered within five minutes over the runs filed (custos drill
// retrieval, package retrieval) within the lookback; no data until a run
// is filed. The records are the failed questions, each run named by its
// time.
func retrievalPassRate(in *input) (*float64, []Row, []Record) {
	b, _ := in.state(retrieval.StateKey)
	if len(b) == 0 {
		return nil, nil, nil
	}
	var st retrieval.State
	if json.Unmarshal(b, &st) != nil {
		return nil, nil, nil
	}
	var total, passed int
	var recs []Record
	for _, r := range st.Runs {
		if r.At.Before(in.since) {
			continue
		}
		for _, q := range r.Questions {
			total++
			if q.Pass {
				passed++
				continue
			}
			why := fmt.Sprintf("%q failed after %s", q.Q, (time.Duration(q.MS) * time.Millisecond).Round(time.Second))
			if q.Error != "" {
				why += ": " + q.Error
			}
			recs = append(recs, Record{Kind: KindDrill, ID: RetrievalRunID(r), User: r.By, At: r.At, Detail: why,
				Link: "/ui/audit?action=drill.retrieval&actor=" + url.QueryEscape(r.By)})
		}
	}
	if total == 0 {
		return nil, nil, nil
	}
	return num(float64(passed) / float64(total)), nil, recs
}

// RetrievalRunID names a retrieval drill run in the drill-down: runs
// have no id of their own, so their time stands for one.
func RetrievalRunID(r retrieval.Run) string { return "retrieval " + r.At.UTC().Format(time.RFC3339) }
