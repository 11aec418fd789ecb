package evidence

import (
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// chainOf links n records from the genesis hash.
func chainOf(n int) []broker.AuditRecord {
	out := make([]broker.AuditRecord, n)
	prev := audit.GenesisHash
	for i := range out {
		r := broker.AuditRecord{Seq: int64(i + 1), ID: "aud", Time: time.Unix(int64(i), 0), Actor: "a", Action: "x",
			Outcome: "success", PrevHash: prev}
		r.Hash = r.ComputeHash()
		out[i], prev = r, r.Hash
	}
	return out
}

// TestSegmentWalk: the period's segment check catches an altered record,
// a broken link, a missing record and a segment that does not link to
// the record before it.
func TestSegmentWalk(t *testing.T) {
	for _, c := range []struct {
		name    string
		from    int // index of the segment's first record
		anchor  func(rs []broker.AuditRecord) string
		tamper  func(rs []broker.AuditRecord) []broker.AuditRecord
		wantBad int64
	}{
		{name: "intact from genesis", from: 0},
		{name: "intact mid-log", from: 3},
		{name: "altered", from: 2, tamper: func(rs []broker.AuditRecord) []broker.AuditRecord { rs[4].Reason = "x"; return rs }, wantBad: 5},
		{name: "relinked", from: 2, tamper: func(rs []broker.AuditRecord) []broker.AuditRecord { rs[5].PrevHash = rs[3].Hash; return rs }, wantBad: 6},
		{name: "missing", from: 2, tamper: func(rs []broker.AuditRecord) []broker.AuditRecord { return append(rs[:4:4], rs[5:]...) }, wantBad: 5},
		{name: "bad anchor", from: 3, anchor: func(rs []broker.AuditRecord) string { return rs[0].Hash }, wantBad: 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := chainOf(8)
			anchor := audit.GenesisHash
			if c.from > 0 {
				anchor = rs[c.from-1].Hash
			}
			if c.anchor != nil {
				anchor = c.anchor(rs)
			}
			if c.tamper != nil {
				rs = c.tamper(rs)
			}
			w := segmentWalk{prev: anchor}
			for _, r := range rs[c.from:] {
				w.next(r)
			}
			got := w.report()
			if got.FirstBad != c.wantBad || got.OK != (c.wantBad == 0) {
				t.Errorf("report %+v, want first bad %d", got, c.wantBad)
			}
		})
	}
}
