package evidence

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// signatureKeys are the audit detail fields of an approval that belong to
// its electronic signature, copied into the bundle when present.
var signatureKeys = []string{"meaning", "signature", "signature_meaning", "signed_at", "reauthenticated", "reauth", "factor"}

// collectAudit reads the period's segment of the audit chain, checks it,
// picks the records that concern the target, and fills in sessions'
// recorded verdicts, approvals' signature fields and break-glass events.
func collectAudit(ctx context.Context, in PeriodInput, b *Bundle, sessions []broker.Session) error {
	ids := map[string]bool{}
	for _, g := range b.Grants {
		ids[g.ID], ids[g.RequestID] = true, true
	}
	for _, r := range b.Requests {
		ids[r.ID] = true
	}
	for _, s := range sessions {
		ids[s.ID], ids[s.GrantID] = true, true
	}
	accounts := map[string]bool{}
	for _, g := range b.Grants {
		if g.BreakGlass != "" {
			accounts[g.BreakGlass] = true
		}
	}

	seg := &b.Audit
	seg.Records, seg.Links = []broker.AuditRecord{}, []Link{}
	var chk segmentWalk
	sealed := map[string]broker.AuditRecord{}
	approvals := map[string]broker.AuditRecord{} // request id + approver
	// The segment runs by seq from the first record stamped in the period
	// to the last: records stamped outside it in between (replicas'
	// clocks, a late writer) are linked and checked too, but not listed.
	first, last, err := bounds(ctx, in)
	if err != nil {
		return fmt.Errorf("evidence: read audit log: %w", err)
	}
	err = auditPages(ctx, in.Store, broker.AuditFilter{AfterSeq: first - 1}, func(r broker.AuditRecord) bool {
		if first == 0 || r.Seq > last {
			return false
		}
		if seg.FirstSeq == 0 {
			seg.FirstSeq = r.Seq
			anchor, err := anchorOf(ctx, in.Store, r.Seq)
			if err != nil {
				chk.fail(r.Seq, "the record before the period could not be read")
			}
			seg.Anchor, chk.prev = anchor, anchor
		}
		seg.LastSeq = r.Seq
		seg.Links = append(seg.Links, Link{Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash})
		chk.next(r)
		d := details(r)
		if r.Time.Before(in.From) || !r.Time.Before(in.To) || !related(r, d, in.Target, ids, accounts) {
			return true
		}
		seg.Records = append(seg.Records, r)
		switch {
		case strings.HasPrefix(r.Action, "breakglass."):
			b.BreakGlass = append(b.BreakGlass, eventOf(r))
		case r.Action == "session.recorded":
			if id, _ := d["session_id"].(string); id != "" {
				sealed[id] = r
			}
		case r.Action == "request.approve":
			if id, _ := d["request_id"].(string); id != "" {
				approvals[id+"\x00"+r.Actor] = r
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("evidence: read audit log: %w", err)
	}
	seg.Segment = chk.report()

	// The last verification of each session may come after the period.
	verified := map[string]broker.AuditRecord{}
	err = auditPages(ctx, in.Store, broker.AuditFilter{Since: in.From, ActionPrefix: "session.verify"}, func(r broker.AuditRecord) bool {
		if r.Action == "session.verify" {
			if id, _ := details(r)["session_id"].(string); ids[id] {
				verified[id] = r
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("evidence: read verifications: %w", err)
	}
	for _, s := range sessions {
		x := Session{Session: s, Commands: Commands(s.Index), Verify: Verdict{Source: "none"}}
		if r, ok := verified[s.ID]; ok {
			intact := r.Outcome == broker.OutcomeSuccess
			x.Verify = Verdict{Source: "recorded", Intact: &intact, Verdict: r.Reason, At: r.Time}
		} else if r, ok := sealed[s.ID]; ok {
			x.Verify = Verdict{Source: "sealed", Verdict: "sealed by the recorder; not verified since", At: r.Time}
		}
		b.Sessions = append(b.Sessions, x)
	}

	grantOf := map[string]string{}
	for _, g := range b.Grants {
		grantOf[g.RequestID] = g.ID
	}
	for i := range b.Requests {
		r := &b.Requests[i]
		r.Approvals = []Approval{}
		for _, d := range r.Request.Approvals {
			a := Approval{RequestID: r.ID, GrantID: grantOf[r.ID], By: d.By, At: d.At, Via: d.Via, Comment: d.Comment}
			if rec, ok := approvals[r.ID+"\x00"+d.By]; ok {
				a.AuditSeq = rec.Seq
				a.Signature = signatureOf(details(rec))
			}
			r.Approvals = append(r.Approvals, a)
			b.Approvals = append(b.Approvals, a)
		}
	}

	rep, err := verifyLog(ctx, in)
	if err != nil {
		return fmt.Errorf("evidence: verify audit log: %w", err)
	}
	seg.Log = rep
	return nil
}

func verifyLog(ctx context.Context, in PeriodInput) (audit.Report, error) {
	if in.Chain != nil {
		return in.Chain.Verify(ctx)
	}
	return audit.Verify(ctx, in.Store)
}

// auditPages calls fn with each record f selects, in seq order, a page at a
// time, until fn returns false.
func auditPages(ctx context.Context, st broker.Store, f broker.AuditFilter, fn func(broker.AuditRecord) bool) error {
	const size = 2000
	f.Limit = size
	for {
		var page []broker.AuditRecord
		err := st.View(ctx, func(tx broker.Tx) error {
			var err error
			page, err = tx.ListAudit(f)
			return err
		})
		if err != nil {
			return err
		}
		for _, r := range page {
			if !fn(r) {
				return nil
			}
		}
		if len(page) < size {
			return nil
		}
		f.AfterSeq = page[len(page)-1].Seq
	}
}

// bounds returns the seqs of the first and last records stamped in the
// period, or zeros.
func bounds(ctx context.Context, in PeriodInput) (first, last int64, err error) {
	err = auditPages(ctx, in.Store, broker.AuditFilter{Since: in.From, Until: in.To}, func(r broker.AuditRecord) bool {
		if r.Time.Before(in.To) {
			if first == 0 {
				first = r.Seq
			}
			last = r.Seq
		}
		return true
	})
	return first, last, err
}

// anchorOf returns the hash of the record before seq: the hash the
// segment's first record must link to.
func anchorOf(ctx context.Context, st broker.Store, seq int64) (string, error) {
	if seq <= 1 {
		return audit.GenesisHash, nil
	}
	var page []broker.AuditRecord
	err := st.View(ctx, func(tx broker.Tx) error {
		var err error
		page, err = tx.ListAudit(broker.AuditFilter{AfterSeq: seq - 2, Limit: 1})
		return err
	})
	if err != nil || len(page) == 0 || page[0].Seq != seq-1 {
		return "", fmt.Errorf("record %d is missing", seq-1)
	}
	return page[0].Hash, nil
}

// segmentWalk checks a run of records that need not start at seq 1.
type segmentWalk struct {
	prev    string
	seq     int64
	n       int
	bad     int64
	problem string
}

func (w *segmentWalk) fail(seq int64, problem string) {
	if w.bad == 0 {
		w.bad, w.problem = seq, problem
	}
}

func (w *segmentWalk) next(r broker.AuditRecord) {
	w.n++
	switch {
	case w.seq != 0 && r.Seq != w.seq+1:
		w.fail(w.seq+1, fmt.Sprintf("gap: seq %d missing", w.seq+1))
	case r.PrevHash != w.prev:
		w.fail(r.Seq, fmt.Sprintf("record %d: prev_hash does not match the record before it", r.Seq))
	case r.ComputeHash() != r.Hash:
		w.fail(r.Seq, fmt.Sprintf("record %d: hash mismatch (record altered)", r.Seq))
	}
	w.seq, w.prev = r.Seq, r.Hash
}

func (w *segmentWalk) report() SegmentCheck {
	return SegmentCheck{OK: w.bad == 0, Records: w.n, FirstBad: w.bad, Problem: w.problem}
}

func details(r broker.AuditRecord) map[string]any {
	var d map[string]any
	if len(r.Details) > 0 {
		_ = json.Unmarshal(r.Details, &d)
	}
	return d
}

// related reports whether a record concerns the target: it names the
// target, or one of the bundle's requests, grants, sessions or
// break-glass accounts.
func related(r broker.AuditRecord, d map[string]any, target string, ids, accounts map[string]bool) bool {
	if r.Target == target || ids[r.Target] || accounts[r.Target] {
		return true
	}
	if t, _ := d["target"].(string); t == target {
		return true
	}
	if a, _ := d["account"].(string); accounts[a] {
		return true
	}
	for _, k := range []string{"session_id", "session", "grant_id", "request_id"} {
		if v, ok := d[k].(string); ok && ids[v] {
			return true
		}
	}
	return false
}

func signatureOf(d map[string]any) map[string]any {
	var out map[string]any
	for _, k := range signatureKeys {
		if v, ok := d[k]; ok {
			if out == nil {
				out = map[string]any{}
			}
			out[k] = v
		}
	}
	return out
}

func eventOf(r broker.AuditRecord) Event {
	return Event{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Target: r.Target, Outcome: r.Outcome,
		Reason: r.Reason, Details: r.Details}
}
