package breakglass

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// Restore drills are due one period after the audit log's first record
// until one passes, then one period after the last that passed; a failed
// drill shows as the last without moving the due date.
func TestRestoreDrillStatus(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	if err := st.Update(t.Context(), func(tx broker.Tx) error {
		_, err := tx.AppendAudit(broker.AuditRecord{Time: first, Actor: "system", Action: "broker.start", Outcome: broker.OutcomeSuccess})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: &config.Config{}, store: st, metrics: m, log: slog.Default()}
	overdue := func(now time.Time) float64 {
		s.restoreOverdue(t.Context(), now)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				if mf.GetName() == "custos_breakglass_drill_overdue" && mt.GetLabel()[0].GetValue() == RestoreAccount {
					return mt.GetGauge().GetValue()
				}
			}
		}
		t.Fatal("no overdue gauge for restore drills")
		return 0
	}
	sch, _ := schedule.Parse(schedule.Spec{})
	status := func(now time.Time) DrillStatus {
		t.Helper()
		var ds DrillStatus
		err := st.View(t.Context(), func(tx broker.Tx) error {
			idx, err := loadDrillIndex(tx)
			if err == nil {
				ds, err = s.restoreStatus(tx, idx, now)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	file := func(id, outcome string, at time.Time) {
		t.Helper()
		d := Drill{ID: id, StartedBy: "os:custos", StartedAt: at, FinishedAt: at.Add(time.Minute), Outcome: outcome}
		if err := SaveRestoreDrill(t.Context(), st, d, map[string]any{"backup": "bak_1"}); err != nil {
			t.Fatal(err)
		}
	}

	if ds := status(first.Add(24 * time.Hour)); ds.Due.NextDue != sch.Next(first) || ds.Due.Overdue || ds.Last != nil {
		t.Errorf("before any drill: %+v", ds)
	}
	late := sch.Next(first).Add(time.Hour)
	if ds := status(late); !ds.Due.Overdue {
		t.Errorf("past due without a drill: %+v", ds.Due)
	}
	if v := overdue(late); v != 1 {
		t.Errorf("overdue gauge %v past due, want 1", v)
	}
	file("drl_a", DrillFailed, late)
	if ds := status(late.Add(2 * time.Minute)); !ds.Due.Overdue || ds.Last == nil || ds.Last.ID != "drl_a" || !ds.LastOK.IsZero() {
		t.Errorf("after a failed drill: %+v", ds)
	}
	file("drl_b", DrillPassed, late.Add(time.Hour))
	ds := status(late.Add(2 * time.Hour))
	if v := overdue(late.Add(2 * time.Hour)); v != 0 {
		t.Errorf("overdue gauge %v after a passed drill, want 0", v)
	}
	if ds.Due.Overdue || ds.Last.ID != "drl_b" || !ds.LastOK.Equal(late.Add(time.Hour+time.Minute)) || ds.Due.NextDue != sch.Next(ds.LastOK) {
		t.Errorf("after a passed drill: %+v", ds)
	}
	if ds.Account != RestoreAccount || ds.Last.Account != RestoreAccount || ds.Last.Quarter != "2026Q1" {
		t.Errorf("filed as %q/%q, quarter %q", ds.Account, ds.Last.Account, ds.Last.Quarter)
	}
	// Each drill has its audit record.
	_ = st.View(t.Context(), func(tx broker.Tx) error {
		recs, _ := tx.ListAudit(broker.AuditFilter{ActionPrefix: "drill.restore"})
		if len(recs) != 2 || recs[0].Outcome != broker.OutcomeError || recs[1].Outcome != broker.OutcomeSuccess {
			t.Errorf("audit records %+v", recs)
		}
		return nil
	})
}
