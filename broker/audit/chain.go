package audit

import (
	"fmt"
	"strings"

	"github.com/custos-pam/custos/broker"
)

// GenesisHash is the PrevHash of the first record: 64 zeros.
var GenesisHash = strings.Repeat("0", 64)

// Report is the result of checking a chain.
type Report struct {
	// Records is the number of records checked.
	Records int `json:"records"`
	// Head is the Hash of the last record checked, or GenesisHash for an
	// empty log. Keep it somewhere else: a log cut short at the end is a
	// valid chain, and only a remembered head shows it.
	Head string `json:"head"`
	// OK is true when every record checked is intact (and, with
	// checkpoints, agrees with them and they raised no problem).
	OK bool `json:"ok"`
	// FirstBad is the Seq of the first broken record, 0 when OK.
	FirstBad int64 `json:"first_bad,omitempty"`
	// Problem says what is wrong with FirstBad.
	Problem string `json:"problem,omitempty"`
	// Checkpoints is what the signed checkpoints showed; nil when the
	// chain was checked without them. OK is false when it lists problems.
	Checkpoints *CheckpointReport `json:"checkpoints,omitempty"`
}

// Chain checks records one at a time in Seq order. The zero value expects
// the log's first record; a Chain stops accepting records at the first
// broken one.
type Chain struct {
	n      int
	seq    int64
	head   string
	bad    int64
	reason string
}

// Next checks r against the records before it and reports whether the
// chain is still intact.
func (c *Chain) Next(r broker.AuditRecord) bool {
	if c.bad != 0 {
		return false
	}
	prev := c.head
	if prev == "" {
		prev = GenesisHash
	}
	want := c.seq + 1
	switch {
	case r.Seq > want:
		c.fail(want, fmt.Sprintf("gap: seq %d missing (next record is seq %d, id %s)", want, r.Seq, r.ID))
	case r.Seq < want:
		c.fail(want, fmt.Sprintf("record out of order: seq %d (id %s) where seq %d was expected", r.Seq, r.ID, want))
	case r.PrevHash != prev && want == 1:
		c.fail(r.Seq, fmt.Sprintf("record %d (id %s): prev_hash is not the genesis hash", r.Seq, r.ID))
	case r.PrevHash != prev:
		c.fail(r.Seq, fmt.Sprintf("record %d (id %s): prev_hash does not match record %d", r.Seq, r.ID, r.Seq-1))
	case r.ComputeHash() != r.Hash:
		c.fail(r.Seq, fmt.Sprintf("record %d (id %s): hash mismatch (record altered)", r.Seq, r.ID))
	default:
		c.n++
		c.seq = r.Seq
		c.head = r.Hash
		return true
	}
	return false
}

func (c *Chain) fail(seq int64, reason string) {
	c.bad, c.reason = seq, reason
}

// Report summarizes the records checked so far.
func (c *Chain) Report() Report {
	head := c.head
	if head == "" {
		head = GenesisHash
	}
	return Report{Records: c.n, Head: head, OK: c.bad == 0, FirstBad: c.bad, Problem: c.reason}
}
