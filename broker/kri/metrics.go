package kri

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the last evaluation on /metrics: custos_kri_<name>
// per indicator with data, custos_kri_limit_crossed per limit,
// custos_kri_actions_open, and the month's sessions and their duration
// per target. It is unchecked: its series follow the config.
type collector struct{ e *Evaluator }

func (collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.e.mu.Lock()
	last, crossed, open := c.e.last, c.e.crossed, c.e.open
	c.e.mu.Unlock()
	gauge := func(name, help string, v float64, labels []string, values ...string) {
		d := prometheus.NewDesc(name, help, labels, nil)
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, values...)
	}
	for _, in := range last {
		if in.Value == nil {
			continue
		}
		gauge("custos_kri_"+in.Name, "Key risk indicator: "+in.Title+" ("+in.Unit+"); see docs/indicators.md.", *in.Value, nil)
		if in.Name == "privileged_sessions_month" {
			for _, r := range in.Breakdown {
				gauge("custos_kri_sessions_month_by_target", "Privileged sessions this month per target.", float64(r.Count),
					[]string{"target"}, r.Key)
				gauge("custos_kri_session_seconds_month_by_target", "Total duration of privileged sessions this month per target.",
					r.Seconds, []string{"target"}, r.Key)
			}
		}
	}
	for _, l := range c.e.config().Indicators.Limits {
		v := 0.0
		if crossed[l.String()] {
			v = 1
		}
		gauge("custos_kri_limit_crossed", "1 while the indicator crosses the quality tolerance limit.", v,
			[]string{"indicator", "limit"}, l.Indicator, l.String())
	}
	gauge("custos_kri_actions_open", "Actions opened by limit crossings and not closed yet.", float64(open), nil)
}
