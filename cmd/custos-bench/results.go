package main

import (
	"sort"
)

// row is one figure of the results: the median of its runs with min and
// max, and the issue-19 target it is held against, if any.
type row struct {
	Scenario string    `json:"scenario"`
	Layout   string    `json:"layout"`
	Measure  string    `json:"measure"`
	Unit     string    `json:"unit"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Runs     []float64 `json:"runs"`
	Target   string    `json:"target,omitempty"`
	Status   string    `json:"status"`                // met, missed, info, no peer, not measured yet
	Plot     string    `json:"plot,omitempty"`        // ratio, memory-postgres, memory-ssh: which plot shows it
	Count    int       `json:"connections,omitempty"` // connections held (memory rows)
	Bound    float64   `json:"bound,omitempty"`       // the target's number, in Unit
}

// target is a bound on a figure: at least (min) or at most.
type target struct {
	text  string
	min   bool
	bound float64
}

func atLeast(text string, v float64) *target { return &target{text: text, min: true, bound: v} }
func atMost(text string, v float64) *target  { return &target{text: text, bound: v} }

func stats(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

func newRow(scenario, layout, measure, unit string, runs []float64, t *target) row {
	r := row{Scenario: scenario, Layout: layout, Measure: measure, Unit: unit, Runs: runs, Status: "info"}
	r.Median, r.Min, r.Max = stats(runs)
	if t != nil {
		r.Target, r.Bound = t.text, t.bound
		ok := r.Median <= t.bound
		if t.min {
			ok = r.Median >= t.bound
		}
		r.Status = "missed"
		if ok {
			r.Status = "met"
		}
	}
	return r
}

func missing(scenario, measure, t, why string) row {
	return row{Scenario: scenario, Measure: measure, Target: t, Status: why}
}
