package kri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass"
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

// RetrievalStateKey is the store state key the retrieval drill (custos
// drill retrieval) files its runs under: a JSON array of RetrievalRun,
// oldest first.
const RetrievalStateKey = "drill/retrieval"

// RetrievalRun is one run of the retrieval drill.
type RetrievalRun struct {
	ID        string              `json:"id"`
	At        time.Time           `json:"at"`
	Questions []RetrievalQuestion `json:"questions"`
}

// RetrievalQuestion is one inspector question of a run, timed.
type RetrievalQuestion struct {
	Question string  `json:"question"`
	Seconds  float64 `json:"seconds"`
	// Passed: answered correctly within five minutes.
	Passed bool `json:"passed"`
}

// retrievalPassRate is the share of questions answered within five
// minutes over the retrieval drill runs within the lookback; no data
// until a run is filed.
func retrievalPassRate(in *input) (*float64, []Row, []Record) {
	b, _ := in.state(RetrievalStateKey)
	if len(b) == 0 {
		return nil, nil, nil
	}
	var runs []RetrievalRun
	if json.Unmarshal(b, &runs) != nil {
		return nil, nil, nil
	}
	var total, passed int
	var recs []Record
	for _, r := range runs {
		if r.At.Before(in.since) {
			continue
		}
		for _, q := range r.Questions {
			total++
			if q.Passed {
				passed++
				continue
			}
			recs = append(recs, Record{Kind: KindDrill, ID: r.ID, At: r.At,
				Detail: fmt.Sprintf("%q failed after %.0fs", q.Question, q.Seconds), Link: drillLink(r.ID)})
		}
	}
	if total == 0 {
		return nil, nil, nil
	}
	return num(float64(passed) / float64(total)), nil, recs
}

// FileRetrievalRun appends a run of the retrieval drill to the runs its
// indicator reads (RetrievalStateKey), keeping the last maxRetrievalRuns.
func FileRetrievalRun(ctx context.Context, st broker.Store, run RetrievalRun) error {
	err := st.Update(ctx, func(tx broker.Tx) error {
		var runs []RetrievalRun
		b, err := tx.GetState(RetrievalStateKey)
		if err != nil && !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &runs); err != nil {
				return fmt.Errorf("decode %s: %w", RetrievalStateKey, err)
			}
		}
		runs = append(runs, run)
		if len(runs) > maxRetrievalRuns {
			runs = runs[len(runs)-maxRetrievalRuns:]
		}
		out, err := json.Marshal(runs)
		if err != nil {
			return err
		}
		return tx.PutState(RetrievalStateKey, out)
	})
	if err != nil {
		return fmt.Errorf("kri: file retrieval run: %w", err)
	}
	return nil
}

// maxRetrievalRuns bounds the runs kept under RetrievalStateKey.
const maxRetrievalRuns = 200
