package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
)

// pageSize is how many records Verify reads per transaction.
const pageSize = 1000

// Viewer is the part of broker.Store that Verify reads through.
type Viewer interface {
	View(ctx context.Context, fn func(broker.Tx) error) error
}

// Verify walks the whole chain in Seq order, a page at a time, checking
// Seq continuity, each PrevHash against the previous Hash and each Hash
// against the record's recomputed hash. A broken chain is reported in the
// Report, not as an error; the error is for a store that cannot be read.
// Records appended while Verify runs are checked too when they land on a
// page it has not read yet. It cannot see a chain rewritten with every
// hash recomputed; Verifier with checkpoints can.
func Verify(ctx context.Context, s Viewer) (Report, error) {
	return (&Verifier{Store: s}).Verify(ctx)
}

// Verifier checks the chain in a store and, when Checkpoints is set,
// compares it with every signed checkpoint.
type Verifier struct {
	// Store holds the chain. Required.
	Store Viewer
	// Checkpoints holds the signed checkpoints. Default: none (the chain
	// alone is checked, as Verify does).
	Checkpoints CheckpointStore
	// Trusted are the public keys whose checkpoint signatures count: the
	// broker's signing key and any key it used before a rotation.
	Trusted []ed25519.PublicKey
	// MaxAge is how old a record may be and still be covered by no
	// checkpoint; see CheckpointMaxAge. Default: no age check.
	MaxAge time.Duration
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Through is the head seq of a store restored from a backup taken at
	// that record: when the chain ends exactly there, checkpoints of
	// later records (written by the broker after the backup) are
	// expected and not reported as missing records. Default: 0, every
	// checkpointed record must be in the store.
	Through int64
}

// CheckpointMaxAge is the MaxAge that fits a checkpoint interval: two
// intervals and a minute, so one late or failed write is not an alarm.
func CheckpointMaxAge(interval time.Duration) time.Duration { return 2*interval + time.Minute }

// Verify checks the chain as the package-level Verify does and, with
// checkpoints, that every record a valid checkpoint lists still has the
// hash the checkpoint recorded, that no record a checkpoint saw is
// missing, that every checkpoint is signed by a trusted key, held under
// Object Lock and not deleted, and that no record older than MaxAge is
// left uncovered. The first record that disagrees ends the walk and is
// named in the Report; checkpoint problems are listed in
// Report.Checkpoints. The error is for a store that cannot be read.
func (v *Verifier) Verify(ctx context.Context) (Report, error) {
	var cps *checkpointSet
	if v.Checkpoints != nil {
		var err error
		if cps, err = loadCheckpoints(ctx, v.Checkpoints, v.Trusted); err != nil {
			return Report{}, fmt.Errorf("audit verify: %w", err)
		}
	}
	var c Chain
	var after int64
	for {
		var page []broker.AuditRecord
		err := v.Store.View(ctx, func(tx broker.Tx) error {
			var err error
			page, err = tx.ListAudit(broker.AuditFilter{AfterSeq: after, Limit: pageSize})
			return err
		})
		if err != nil {
			return v.finish(c, cps), fmt.Errorf("audit verify: %w", err)
		}
		for _, r := range page {
			if cps != nil && r.Seq == c.seq+1 {
				if problem := cps.compare(r); problem != "" {
					c.fail(r.Seq, problem)
					return v.finish(c, cps), nil
				}
			}
			if !c.Next(r) {
				return v.finish(c, cps), nil
			}
			after = r.Seq
		}
		if len(page) < pageSize {
			if cps != nil && c.bad == 0 && (v.Through == 0 || c.seq != v.Through) {
				if problem := cps.beyond(c.seq); problem != "" {
					c.fail(c.seq+1, problem)
				}
			}
			return v.finish(c, cps), nil
		}
	}
}

// finish builds the Report, with the checkpoint section and its age check
// when checkpoints were read.
func (v *Verifier) finish(c Chain, cps *checkpointSet) Report {
	rep := c.Report()
	if cps == nil {
		return rep
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if c.bad == 0 && v.MaxAge > 0 {
		cps.checkAge(now(), v.MaxAge)
	}
	rep.Checkpoints = cps.report()
	if len(rep.Checkpoints.Problems) > 0 {
		rep.OK = false
	}
	return rep
}
