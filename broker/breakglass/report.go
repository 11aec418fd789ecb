package breakglass

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/config"
)

// DrillStatus is one account's drill standing.
type DrillStatus struct {
	Account string   `json:"account"`
	Target  string   `json:"target"`
	Due     DrillDue `json:"due"`
	// LastOK is when the last successful drill finished.
	LastOK time.Time `json:"last_ok,omitzero"`
	// Last is the most recent drill, Running one in progress.
	Last    *Drill `json:"last,omitempty"`
	Running *Drill `json:"running,omitempty"`
}

// DrillStatuses returns the drill standing of the accounts the actor may
// see.
func (s *Service) DrillStatuses(ctx context.Context, actor string) ([]DrillStatus, error) {
	return s.drillStatuses(ctx, func(a *config.BreakGlassAccount) bool { return s.maySee(a, actor) },
		s.dir.IsSecurityAdmin(actor))
}

// Standings returns the drill standing of every account and of the
// restore drills, for the risk indicators (security staff only).
func (s *Service) Standings(ctx context.Context) ([]DrillStatus, error) {
	return s.drillStatuses(ctx, func(*config.BreakGlassAccount) bool { return true }, true)
}

// DrillsSince returns every drill (accounts' and restore) started at or
// after since, oldest first, for the risk indicators.
func (s *Service) DrillsSince(ctx context.Context, since time.Time) ([]Drill, error) {
	var out []Drill
	err := s.store.View(ctx, func(tx broker.Tx) error {
		idx, err := loadDrillIndex(tx)
		if err != nil {
			return err
		}
		for _, r := range idx {
			if r.StartedAt.Before(since) {
				continue
			}
			d, err := loadDrill(tx, r.ID)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("breakglass: drills: %w", err)
	}
	return out, nil
}

func (s *Service) drillStatuses(ctx context.Context, see func(*config.BreakGlassAccount) bool, restore bool) ([]DrillStatus, error) {
	now := s.now().UTC()
	out := []DrillStatus{}
	err := s.store.View(ctx, func(tx broker.Tx) error {
		idx, err := loadDrillIndex(tx)
		if err != nil {
			return err
		}
		for i := range s.cfg.BreakGlass {
			a := &s.cfg.BreakGlass[i]
			if !see(a) {
				continue
			}
			st, err := loadAccount(tx, a.Name, now)
			if err != nil {
				return err
			}
			ds := DrillStatus{Account: a.Name, Target: a.Target, Due: s.due(a.Name, st, now), LastOK: st.LastDrillOK}
			for j := len(idx) - 1; j >= 0; j-- {
				r := idx[j]
				if r.Account != a.Name {
					continue
				}
				d, err := loadDrill(tx, r.ID)
				if err != nil {
					return err
				}
				if d.Outcome == DrillRunning && ds.Running == nil {
					ds.Running = &d
					continue
				}
				ds.Last = &d
				break
			}
			out = append(out, ds)
		}
		if restore {
			rs, err := s.restoreStatus(tx, idx, now)
			if err != nil {
				return err
			}
			out = append(out, rs)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("breakglass: drill status: %w", err)
	}
	return out, nil
}

// Report is the drills of one quarter, for the inspection binder.
type Report struct {
	Quarter     string    `json:"quarter"`
	GeneratedAt time.Time `json:"generated_at"`
	Drills      []Drill   `json:"drills"`
	Passed      int       `json:"passed"`
	Failed      int       `json:"failed"`
	Running     int       `json:"running"`
	// Overdue lists accounts whose drill is past due at GeneratedAt.
	Overdue []string `json:"overdue"`
}

// DrillReport returns the drills started in quarter ("2026Q4", UTC) of the
// accounts the actor may see, oldest first.
func (s *Service) DrillReport(ctx context.Context, actor, quarter string) (Report, error) {
	if _, _, err := schedule.ParseQuarter(quarter); err != nil {
		return Report{}, refuse(broker.KindInvalid, "bad_quarter", "%v", err)
	}
	quarter = strings.ToUpper(quarter)
	now := s.now().UTC()
	r := Report{Quarter: quarter, GeneratedAt: now, Drills: []Drill{}, Overdue: []string{}}
	err := s.store.View(ctx, func(tx broker.Tx) error {
		idx, err := loadDrillIndex(tx)
		if err != nil {
			return err
		}
		for _, ref := range idx {
			a, ok := s.cfg.FindBreakGlass(ref.Account)
			if ref.Quarter != quarter || (ok && !s.maySee(a, actor)) || (!ok && !s.dir.IsSecurityAdmin(actor)) {
				continue
			}
			d, err := loadDrill(tx, ref.ID)
			if err != nil {
				return err
			}
			r.Drills = append(r.Drills, d)
			switch d.Outcome {
			case DrillPassed:
				r.Passed++
			case DrillFailed:
				r.Failed++
			default:
				r.Running++
			}
		}
		for i := range s.cfg.BreakGlass {
			a := &s.cfg.BreakGlass[i]
			if !s.maySee(a, actor) {
				continue
			}
			st, err := loadAccount(tx, a.Name, now)
			if err != nil {
				return err
			}
			if s.due(a.Name, st, now).Overdue {
				r.Overdue = append(r.Overdue, a.Name)
			}
		}
		if s.dir.IsSecurityAdmin(actor) {
			rs, err := s.restoreStatus(tx, idx, now)
			if err != nil {
				return err
			}
			if rs.Due.Overdue {
				r.Overdue = append(r.Overdue, RestoreAccount)
			}
		}
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("breakglass: drill report: %w", err)
	}
	slices.SortFunc(r.Drills, func(a, b Drill) int { return a.StartedAt.Compare(b.StartedAt) })
	return r, nil
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// csvHeader is the report's CSV columns: one row per drill step.
var csvHeader = []string{"quarter", "drill_id", "account", "target", "started_by", "participants", "drill_started_at",
	"drill_finished_at", "outcome", "reason", "time_to_access_ms", "recording_id", "step", "step_started_at",
	"step_ended_at", "step_duration_ms", "step_outcome", "step_detail"}

// WriteCSV writes one row per drill step, each row carrying its drill's
// fields, so a spreadsheet can filter and pivot.
func (r Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, d := range r.Drills {
		steps := d.Steps
		if len(steps) == 0 {
			steps = []Step{{}}
		}
		for _, st := range steps {
			row := []string{r.Quarter, d.ID, d.Account, d.Target, d.StartedBy, strings.Join(d.Participants, " "),
				stamp(d.StartedAt), stamp(d.FinishedAt), d.Outcome, d.Reason, ms(d.TimeToAccess), d.RecordingID,
				st.Name, stamp(st.StartedAt), stamp(st.EndedAt), ms(st.Duration()), st.Outcome, st.Detail}
			if st.Name == "" {
				row[15] = ""
			}
			if err := cw.Write(row); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteText writes the report for people: a summary, then each drill with
// its steps and timings.
func (r Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Break-glass drill report %s (generated %s)\n", r.Quarter, stamp(r.GeneratedAt))
	fmt.Fprintf(w, "%d drill(s): %d passed, %d failed, %d running. Overdue now: %s\n", len(r.Drills), r.Passed, r.Failed, r.Running, orNone(r.Overdue))
	for _, d := range r.Drills {
		fmt.Fprintf(w, "\ndrill %s  account %s (%s)  %s\n", d.ID, d.Account, d.Target, strings.ToUpper(d.Outcome))
		if d.Reason != "" {
			fmt.Fprintf(w, "  reason: %s\n", d.Reason)
		}
		fmt.Fprintf(w, "  started %s by %s; participants: %s\n", stamp(d.StartedAt), d.StartedBy, orNone(d.Participants))
		total := ""
		if !d.FinishedAt.IsZero() {
			total = "; total " + d.FinishedAt.Sub(d.StartedAt).Round(time.Millisecond).String()
		}
		rec := d.RecordingID
		if rec == "" {
			rec = "none"
		}
		fmt.Fprintf(w, "  time to access %s%s; probe %q; recording %s\n", d.TimeToAccess.Round(time.Millisecond), total, d.Probe, rec)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STEP\tSTARTED\tDURATION\tOUTCOME\tDETAIL")
		for _, st := range d.Steps {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", st.Name, stamp(st.StartedAt), st.Duration().Round(time.Millisecond), st.Outcome, st.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func ms(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
