package breakglass

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
)

// Restore drills (custos drill restore) are filed with the break-glass
// drills under this pseudo-account, so the drill status, report and
// metrics show them beside the accounts' drills. Parentheses keep it
// apart from any account name. Only security admins see them.
const (
	RestoreAccount = "(restore)"
	RestoreTarget  = "state store, keys and recordings"
)

// SaveRestoreDrill files a finished restore drill and appends its audit
// record (action drill.restore, details as given) in one transaction.
func SaveRestoreDrill(ctx context.Context, st broker.Store, d Drill, details any) error {
	d.Account, d.Target = RestoreAccount, RestoreTarget
	if d.Quarter == "" {
		d.Quarter = schedule.Quarter(d.StartedAt)
	}
	det, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("breakglass: restore drill: %w", err)
	}
	outcome := broker.OutcomeSuccess
	if d.Outcome != DrillPassed {
		outcome = broker.OutcomeError
	}
	err = st.Update(ctx, func(tx broker.Tx) error {
		if err := saveDrill(tx, d); err != nil {
			return err
		}
		_, err := tx.AppendAudit(broker.AuditRecord{Actor: d.StartedBy, Action: "drill.restore", Target: d.ID,
			Outcome: outcome, Reason: d.Reason, Details: det})
		return err
	})
	if err != nil {
		return fmt.Errorf("breakglass: restore drill: %w", err)
	}
	return nil
}

// restoreStatus is the restore drills' standing: due after the last
// passed one, or after the audit log's first record when none passed.
func (s *Service) restoreStatus(tx broker.Tx, idx []drillRef, now time.Time) (DrillStatus, error) {
	ds := DrillStatus{Account: RestoreAccount, Target: RestoreTarget}
	for j := len(idx) - 1; j >= 0; j-- {
		r := idx[j]
		if r.Account != RestoreAccount {
			continue
		}
		d, err := loadDrill(tx, r.ID)
		if err != nil {
			return ds, err
		}
		if ds.Last == nil {
			ds.Last = &d
		}
		if d.Outcome == DrillPassed {
			ds.LastOK = d.FinishedAt
			break
		}
	}
	sch, err := schedule.Parse(s.cfg.Backup.RestoreDrill.ScheduleSpec())
	if err != nil {
		return ds, nil // config validation reports it
	}
	base := ds.LastOK
	if base.IsZero() {
		first, err := tx.ListAudit(broker.AuditFilter{Limit: 1})
		if err != nil {
			return ds, err
		}
		base = now
		if len(first) > 0 {
			base = first[0].Time
		}
	}
	next := sch.Next(base)
	ds.Due = DrillDue{Schedule: sch.String(), NextDue: next, Overdue: !next.IsZero() && now.After(next)}
	return ds, nil
}

// restoreOverdue sets custos_breakglass_drill_overdue{account="(restore)"}
// from the restore drills' standing, so an overdue restore drill can be
// alerted on like an account's.
func (s *Service) restoreOverdue(ctx context.Context, now time.Time) {
	var ds DrillStatus
	err := s.store.View(ctx, func(tx broker.Tx) error {
		idx, err := loadDrillIndex(tx)
		if err == nil {
			ds, err = s.restoreStatus(tx, idx, now)
		}
		return err
	})
	if err != nil {
		s.log.Warn("restore drill standing not read", "err", err)
		return
	}
	s.metrics.setOverdue(RestoreAccount, ds.Due.Overdue)
}
