package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder"
)

// metricsQueryTimeout bounds the store queries of one scrape.
const metricsQueryTimeout = 2 * time.Second

// stateCollector reports what the store and the recorder hold at scrape
// time: pending requests and active grants (for the whole deployment, as
// every replica shares the store), and this broker's upload backlog.
type stateCollector struct {
	store broker.Store
	rec   *recorder.Recorder
	log   func(msg string, args ...any)

	pending, grants, spoolChunks, spoolBytes, spoolUsed, lag, uploadErrors *prometheus.Desc
}

func newStateCollector(st broker.Store, rec *recorder.Recorder, warn func(string, ...any)) *stateCollector {
	return &stateCollector{store: st, rec: rec, log: warn,
		pending: prometheus.NewDesc("custos_access_requests_pending",
			"Access requests waiting for a decision.", nil, nil),
		grants: prometheus.NewDesc("custos_grants_active",
			"Grants giving access now.", nil, nil),
		spoolChunks: prometheus.NewDesc("custos_recorder_spool_chunks",
			"Sealed recording chunks in this broker's spool waiting for upload.", nil, nil),
		spoolBytes: prometheus.NewDesc("custos_recorder_spool_bytes",
			"Bytes of sealed recording chunks in this broker's spool waiting for upload.", nil, nil),
		spoolUsed: prometheus.NewDesc("custos_recorder_spool_used_bytes",
			"Bytes this broker's spool holds (chunks of sessions not yet stored, uploaded or not), as counted against recording.spool_max_bytes.", nil, nil),
		lag: prometheus.NewDesc("custos_recorder_upload_lag_seconds",
			"Age of the oldest recording chunk waiting for upload; 0 when none waits.", nil, nil),
		uploadErrors: prometheus.NewDesc("custos_recorder_upload_errors_total",
			"Failed object store calls (chunk uploads, manifests) of the recorder.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.grants, c.spoolChunks, c.spoolBytes, c.spoolUsed, c.lag, c.uploadErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A store that does not answer
// leaves its two series out of the scrape rather than report zero.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsQueryTimeout)
	defer cancel()
	var pending, grants int
	err := c.store.View(ctx, func(tx broker.Tx) error {
		reqs, err := tx.ListRequests(broker.RequestFilter{States: []broker.RequestState{broker.RequestPending}})
		if err != nil {
			return err
		}
		gs, err := tx.ListGrants(broker.GrantFilter{States: []broker.GrantState{broker.GrantActive}, ActiveAt: time.Now()})
		if err != nil {
			return err
		}
		pending, grants = len(reqs), len(gs)
		return nil
	})
	if err != nil {
		c.log("metrics: store query failed", "err", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
		ch <- prometheus.MustNewConstMetric(c.grants, prometheus.GaugeValue, float64(grants))
	}
	if c.rec == nil {
		return
	}
	b := c.rec.Backlog()
	lag := 0.0
	if !b.Oldest.IsZero() {
		lag = max(time.Since(b.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.spoolChunks, prometheus.GaugeValue, float64(b.Chunks))
	ch <- prometheus.MustNewConstMetric(c.spoolBytes, prometheus.GaugeValue, float64(b.Bytes))
	ch <- prometheus.MustNewConstMetric(c.spoolUsed, prometheus.GaugeValue, float64(c.rec.SpoolBytes()))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(c.uploadErrors, prometheus.CounterValue, float64(b.StoreErrors))
}
