package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

// chain builds n well-formed records.
func chain(n int) []broker.AuditRecord {
	var out []broker.AuditRecord
	prev := GenesisHash
	for i := range n {
		r := broker.AuditRecord{Seq: int64(i + 1), ID: "aud_" + string(rune('a'+i)),
			Time: time.Date(2025, 1, 1, 0, 0, i, 1, time.UTC), Actor: "alice", Action: "x", Outcome: "success",
			PrevHash: prev}
		r.Hash = r.ComputeHash()
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

func TestChain(t *testing.T) {
	cases := []struct {
		name     string
		edit     func([]broker.AuditRecord) []broker.AuditRecord
		firstBad int64
		problem  string
	}{
		{"intact", func(r []broker.AuditRecord) []broker.AuditRecord { return r }, 0, ""},
		{"empty", func(r []broker.AuditRecord) []broker.AuditRecord { return nil }, 0, ""},
		{"altered field", func(r []broker.AuditRecord) []broker.AuditRecord {
			r[2].Outcome = "denied"
			return r
		}, 3, "record 3 (id aud_c): hash mismatch (record altered)"},
		{"altered time by 1ns", func(r []broker.AuditRecord) []broker.AuditRecord {
			r[1].Time = r[1].Time.Add(1)
			return r
		}, 2, "hash mismatch"},
		{"rehashed", func(r []broker.AuditRecord) []broker.AuditRecord {
			r[2].Actor = "mallory"
			r[2].Hash = r[2].ComputeHash()
			return r
		}, 4, "record 4 (id aud_d): prev_hash does not match record 3"},
		{"bad genesis", func(r []broker.AuditRecord) []broker.AuditRecord {
			r[0].PrevHash = strings.Repeat("1", 64)
			r[0].Hash = r[0].ComputeHash()
			return r
		}, 1, "not the genesis hash"},
		{"missing record", func(r []broker.AuditRecord) []broker.AuditRecord {
			return append(r[:2], r[3:]...)
		}, 3, "gap: seq 3 missing (next record is seq 4, id aud_d)"},
		{"missing first", func(r []broker.AuditRecord) []broker.AuditRecord { return r[1:] }, 1, "gap: seq 1 missing"},
		{"duplicate", func(r []broker.AuditRecord) []broker.AuditRecord {
			return append(r[:3], r[2:]...)
		}, 4, "out of order"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs := c.edit(chain(5))
			var ch Chain
			for _, r := range recs {
				ch.Next(r)
			}
			rep := ch.Report()
			if rep.FirstBad != c.firstBad || rep.OK != (c.firstBad == 0) || !strings.Contains(rep.Problem, c.problem) {
				t.Errorf("Report = %+v; want FirstBad %d, problem %q", rep, c.firstBad, c.problem)
			}
			if c.firstBad == 0 {
				want := GenesisHash
				if len(recs) > 0 {
					want = recs[len(recs)-1].Hash
				}
				if rep.Head != want || rep.Records != len(recs) {
					t.Errorf("Report = %+v; want %d records, head %s", rep, len(recs), want)
				}
			} else if rep.Records != int(c.firstBad-1) {
				t.Errorf("Records = %d, want %d", rep.Records, c.firstBad-1)
			}
		})
	}
}

func TestChainStopsAtFirstBreak(t *testing.T) {
	recs := chain(5)
	recs[1].Outcome = "x"
	recs[3].Outcome = "y"
	var ch Chain
	for _, r := range recs {
		ch.Next(r)
	}
	if rep := ch.Report(); rep.FirstBad != 2 {
		t.Errorf("FirstBad = %d, want 2 (the first break)", rep.FirstBad)
	}
}
