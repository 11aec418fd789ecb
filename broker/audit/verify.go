package audit

import (
	"context"
	"fmt"

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
// page it has not read yet.
func Verify(ctx context.Context, s Viewer) (Report, error) {
	var c Chain
	var after int64
	for {
		var page []broker.AuditRecord
		err := s.View(ctx, func(tx broker.Tx) error {
			var err error
			page, err = tx.ListAudit(broker.AuditFilter{AfterSeq: after, Limit: pageSize})
			return err
		})
		if err != nil {
			return c.Report(), fmt.Errorf("audit verify: %w", err)
		}
		for _, r := range page {
			if !c.Next(r) {
				return c.Report(), nil
			}
			after = r.Seq
		}
		if len(page) < pageSize {
			return c.Report(), nil
		}
	}
}
