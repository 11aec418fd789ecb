// Package metrics holds the broker's Prometheus series. cmd/custos/app
// builds one Metrics, registers it on the registry /metrics serves, and
// passes it to the access service, the proxies, the Vault client and the
// HTTP server; each records what it sees. A nil *Metrics records nothing,
// so tests and tools that build a part alone need none.
//
// Names follow the Prometheus conventions: a custos_ prefix, _total on
// counters, _seconds and _bytes units, and labels with a bounded set of
// values only (states, protocols, directions, route patterns, operations),
// never a user, target, path or identifier.
package metrics

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the broker's series.
type Metrics struct {
	requests        *prometheus.CounterVec
	approvalLatency prometheus.Histogram
	sessions        *prometheus.GaugeVec
	sessionsTotal   *prometheus.CounterVec
	relayed         *prometheus.CounterVec
	vaultSeconds    *prometheus.HistogramVec
	vaultErrors     *prometheus.CounterVec
	httpSeconds     *prometheus.HistogramVec
	auditAppends    *prometheus.CounterVec
}

// Directions of relayed bytes.
const (
	ToTarget = "to_target"
	ToClient = "to_client"
)

// New returns the series registered on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_access_requests_total",
			Help: "Access requests that reached each state (pending when made, then approved, denied, cancelled or expired)."},
			[]string{"state"}),
		approvalLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "custos_access_approval_latency_seconds",
			Help:    "Time from an access request to its approval or denial.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600}}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custos_sessions_active",
			Help: "Proxied sessions running on this broker, per protocol."}, []string{"protocol"}),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_sessions_total",
			Help: "Proxied sessions opened on this broker, per protocol."}, []string{"protocol"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_relayed_bytes_total",
			Help: "Bytes relayed by the proxies, per protocol and direction (to_target, to_client)."},
			[]string{"protocol", "direction"}),
		vaultSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "custos_vault_request_duration_seconds",
			Help:    "Duration of Vault calls, per operation (read, write, login, revoke ...).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"operation"}),
		vaultErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_vault_errors_total",
			Help: "Vault calls that failed, per operation."}, []string{"operation"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "custos_http_request_duration_seconds",
			Help:    "Duration of HTTP requests, per route pattern (with its method, as registered) and status code.",
			Buckets: prometheus.DefBuckets}, []string{"route", "code"}),
		auditAppends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_audit_appends_total",
			Help: "Records appended to the audit log, per outcome."}, []string{"outcome"}),
	}
	// Series operators alert on exist from the start, at zero.
	for _, st := range []string{"pending", "approved", "denied", "cancelled", "expired"} {
		m.requests.WithLabelValues(st)
	}
	for _, op := range []string{"read", "write", "login", "renew", "revoke"} {
		m.vaultErrors.WithLabelValues(op)
	}
	for _, c := range []prometheus.Collector{m.requests, m.approvalLatency, m.sessions, m.sessionsTotal, m.relayed,
		m.vaultSeconds, m.vaultErrors, m.httpSeconds, m.auditAppends} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// RequestState counts a request reaching state.
func (m *Metrics) RequestState(state string) {
	if m != nil {
		m.requests.WithLabelValues(state).Inc()
	}
}

// Decided observes the time from a request to its approval or denial.
func (m *Metrics) Decided(created, decided time.Time) {
	if m != nil && !created.IsZero() && !decided.IsZero() {
		m.approvalLatency.Observe(max(decided.Sub(created), 0).Seconds())
	}
}

// Session is one session's series, fetched once when it opens so the
// relay's hot path only adds.
type Session struct {
	m                  *Metrics
	protocol           string
	toTarget, toClient prometheus.Counter
}

// SessionOpened counts a session of protocol as running until its
// Session's Closed.
func (m *Metrics) SessionOpened(protocol string) *Session {
	if m == nil {
		return nil
	}
	m.sessions.WithLabelValues(protocol).Inc()
	m.sessionsTotal.WithLabelValues(protocol).Inc()
	return &Session{m: m, protocol: protocol,
		toTarget: m.relayed.WithLabelValues(protocol, ToTarget),
		toClient: m.relayed.WithLabelValues(protocol, ToClient)}
}

// Relayed adds n bytes relayed in direction (ToTarget or ToClient).
func (s *Session) Relayed(direction string, n int) {
	if s == nil || n <= 0 {
		return
	}
	if direction == ToTarget {
		s.toTarget.Add(float64(n))
	} else {
		s.toClient.Add(float64(n))
	}
}

// Closed counts the session as no longer running. Call it once.
func (s *Session) Closed() {
	if s != nil {
		s.m.sessions.WithLabelValues(s.protocol).Dec()
	}
}

// VaultCall observes one Vault call; op's first word (read, write, ...)
// is the operation label, never the path.
func (m *Metrics) VaultCall(op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	op, _, _ = strings.Cut(op, " ")
	if op == "" {
		op = "other"
	}
	m.vaultSeconds.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.vaultErrors.WithLabelValues(op).Inc()
	}
}

// HTTPRequest observes one HTTP request by its route pattern ("" for a
// request no route matched). The pattern carries the method where the
// route names one; the request's own method is not a label, as a client
// may send any.
func (m *Metrics) HTTPRequest(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	m.httpSeconds.WithLabelValues(route, strconv.Itoa(code)).Observe(d.Seconds())
}

// AuditAppended counts an audit record appended with outcome.
func (m *Metrics) AuditAppended(outcome string) {
	if m != nil {
		m.auditAppends.WithLabelValues(outcome).Inc()
	}
}
