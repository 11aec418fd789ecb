// Package web is the broker's HTTP face: the JSON API under /api/v1, health
// and readiness probes, Prometheus metrics, and (later) the web UI and its
// websockets. Handlers translate HTTP to calls on the broker's services and
// never hold domain logic of their own.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

	mu     sync.Mutex
	checks map[string]Check
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
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return s
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
// "POST /api/v1/requests".
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFunc registers a handler function for a ServeMux pattern.
func (s *Server) HandleFunc(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// Handler is the root handler, with request logging and panic recovery.
func (s *Server) Handler() http.Handler {
	return s.recoverer(withSource(s.mux))
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
	type result struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error,omitempty"`
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
				results[i].Error = err.Error()
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

// APIError is the JSON body of every error response: a machine-readable
// code and a message for people.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorBody wraps APIError as {"error": {...}}.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// WriteJSON writes v as JSON with the status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes an APIError.
func WriteError(w http.ResponseWriter, code int, errCode, msg string) {
	WriteJSON(w, code, ErrorBody{Error: APIError{Code: errCode, Message: msg}})
}

// DecodeJSON reads a JSON request body of at most 1 MiB into v, rejecting
// unknown fields.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errors.New("request body too large")
		}
		return errors.New("malformed JSON body: " + err.Error())
	}
	return nil
}
