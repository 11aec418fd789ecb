// Package web is the broker's HTTP face: the JSON API under /api/v1, health
// and readiness probes, Prometheus metrics, and (later) the web UI and its
// websockets. Handlers translate HTTP to calls on the broker's services and
// never hold domain logic of their own.
package web

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custos-pam/custos/broker/metrics"
)

// Check is a readiness check of one dependency (store, Vault, object store).
// It returns nil when the dependency answers.
type Check func(ctx context.Context) error

// Server routes the broker's HTTP endpoints. Build it with New, register
// feature routes with Handle, then serve Handler.
type Server struct {
	log      *slog.Logger
	mux      *http.ServeMux
	registry *prometheus.Registry

	mu           sync.Mutex
	checks       map[string]Check
	routes       []string
	metricsToken string
	metrics      *metrics.Metrics
	// forwarded decides the client address of requests from trusted
	// proxies (TrustProxies).
	forwarded forwarded
}

// New returns a server with /healthz, /readyz and /metrics registered.
// registry may be nil, in which case a fresh one with the Go and process
// collectors is used.
func New(log *slog.Logger, registry *prometheus.Registry) *Server {
	if registry == nil {
		registry = prometheus.NewRegistry()
		registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	}
	s := &Server{log: log, mux: http.NewServeMux(), registry: registry, checks: map[string]Check{}}
	s.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.HandleFunc("GET /readyz", s.readyz)
	s.Handle("GET /metrics", s.metricsGate(promhttp.HandlerFor(registry, promhttp.HandlerOpts{})))
	return s
}

// ProtectMetrics makes /metrics answer only requests that carry token as
// a bearer token. Without a token (the default) /metrics answers loopback
// callers only.
func (s *Server) ProtectMetrics(token string) {
	s.mu.Lock()
	s.metricsToken = token
	s.mu.Unlock()
}

func (s *Server) metricsGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		token := s.metricsToken
		s.mu.Unlock()
		if token == "" {
			if ip, err := netip.ParseAddr(ClientIP(r)); err != nil || !ip.IsLoopback() {
				WriteError(w, http.StatusForbidden, "forbidden", "metrics are served to loopback callers only unless listen.metrics_token is set")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			WriteError(w, http.StatusUnauthorized, "unauthenticated", "metrics need the metrics bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Registry is the Prometheus registry served on /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// AddCheck registers a readiness check under a name shown by /readyz.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Handle registers a handler for a ServeMux pattern such as
// "POST /api/v1/requests". Every pattern is listed by Routes.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mu.Lock()
	s.routes = append(s.routes, pattern)
	s.mu.Unlock()
	s.mux.Handle(pattern, h)
}

// HandleFunc registers a handler function for a ServeMux pattern.
func (s *Server) HandleFunc(pattern string, h http.HandlerFunc) { s.Handle(pattern, h) }

// Routes lists every registered pattern, sorted: the authorization test
// compares it with its table, so a route added without a row fails it.
func (s *Server) Routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.routes...)
	sort.Strings(out)
	return out
}

// Handler is the root handler, with the access log, request metrics and
// panic recovery.
func (s *Server) Handler() http.Handler {
	return s.clientAddr(s.recoverer(withSource(s.observe(s.mux))))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)

	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	// The answer names each check and whether it passed, never why not:
	// error text can carry addresses and internals. The cause is logged.
	type result struct {
		Name string `json:"name"`
		OK   bool   `json:"ok"`
	}
	results := make([]result, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := checks[n](ctx)
			results[i] = result{Name: n, OK: err == nil}
			if err != nil {
				s.log.Warn("readiness check failed", "check", n, "err", err)
			}
		}()
	}
	wg.Wait()
	status, code := "ready", http.StatusOK
	for _, res := range results {
		if !res.OK {
			status, code = "not ready", http.StatusServiceUnavailable
		}
	}
	WriteJSON(w, code, map[string]any{"status": status, "checks": results})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("http handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				WriteError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
