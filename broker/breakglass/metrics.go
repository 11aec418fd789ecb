package breakglass

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the break-glass series on /metrics.
type metrics struct {
	overdue  *prometheus.GaugeVec
	failures *prometheus.GaugeVec
	drills   *prometheus.GaugeVec
	states   *prometheus.GaugeVec
}

var allStates = []State{StateSealed, StateUnsealRequested, StateOpen, StateRotating, StateCompromised}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		overdue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custos_breakglass_drill_overdue",
			Help: "1 when the account's break-glass drill is past due, 0 otherwise."}, []string{"account"}),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custos_breakglass_drill_failures",
			Help: "Failed break-glass drills in the calendar quarter (UTC), a key risk indicator."}, []string{"quarter"}),
		drills: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custos_breakglass_drills",
			Help: "Break-glass drills run in the calendar quarter (UTC), by outcome."}, []string{"quarter", "outcome"}),
		states: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custos_breakglass_account_state",
			Help: "1 for the state each break-glass account is in."}, []string{"account", "state"}),
	}
	for _, c := range []prometheus.Collector{m.overdue, m.failures, m.drills, m.states} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) state(account string, st State) {
	for _, s := range allStates {
		v := 0.0
		if s == st {
			v = 1
		}
		m.states.WithLabelValues(account, string(s)).Set(v)
	}
}

func (m *metrics) setOverdue(account string, overdue bool) {
	v := 0.0
	if overdue {
		v = 1
	}
	m.overdue.WithLabelValues(account).Set(v)
}

// drillCounts sets the per-quarter series from the drill index.
func (m *metrics) drillCounts(idx []drillRef, current string) {
	failed := map[string]int{current: 0}
	counts := map[[2]string]int{}
	for _, r := range idx {
		counts[[2]string{r.Quarter, r.Outcome}]++
		if r.Outcome == DrillFailed {
			failed[r.Quarter]++
		} else if _, ok := failed[r.Quarter]; !ok {
			failed[r.Quarter] = 0
		}
	}
	m.failures.Reset()
	m.drills.Reset()
	for q, n := range failed {
		m.failures.WithLabelValues(q).Set(float64(n))
	}
	for k, n := range counts {
		m.drills.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
}
