package web

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker/metrics"
)

// SetMetrics makes the server time every request by route pattern in m.
// Call it before Handler.
func (s *Server) SetMetrics(m *metrics.Metrics) {
	s.mu.Lock()
	s.metrics = m
	s.mu.Unlock()
}

// requestUser is filled by WithPrincipal once the caller is known, for
// the access log line written after the handler returns.
type requestUser struct{ name atomic.Pointer[string] }

type requestUserKey struct{}

// noteUser records user as the request's caller in the access log.
func noteUser(ctx context.Context, user string) {
	if ru, ok := ctx.Value(requestUserKey{}).(*requestUser); ok && user != "" {
		ru.name.Store(&user)
	}
}

// probes are polled by monitoring every few seconds; their access log
// lines are debug level so they do not drown the rest.
var probes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// observe writes one access log line per request and observes its
// duration: method, route pattern, status, duration, bytes written,
// client address and, once authenticated, the user. The raw path and
// query string are never logged nor used as a label (a token or an
// identifier may be in them), nor are any header or cookie.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		ru := &requestUser{}
		r = r.WithContext(context.WithValue(r.Context(), requestUserKey{}, ru))
		sw := &statusWriter{ResponseWriter: w}
		returned := false
		defer func() {
			d := time.Since(began)
			status := sw.status
			switch {
			case status == 0 && !returned:
				status = http.StatusInternalServerError // a panic, answered by the recoverer
			case status == 0:
				status = http.StatusOK
			}
			// r.Pattern is the pattern the mux matched, set on this
			// request by the mux itself.
			s.metrics.HTTPRequest(r.Pattern, status, d)
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			attrs := []any{"method", r.Method, "route", route, "status", status,
				"duration_ms", float64(d.Microseconds()) / 1000, "bytes", sw.bytes, "client", ClientIP(r)}
			if u := ru.name.Load(); u != nil {
				attrs = append(attrs, "user", *u)
			}
			level := slog.LevelInfo
			if probes[route] {
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "http request", attrs...)
		}()
		next.ServeHTTP(sw, r)
		returned = true
	})
}

// statusWriter remembers the status and counts the body bytes. It keeps
// the writer's hijacking (websockets) and flushing (streamed exports).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection over (a websocket upgrade).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("web: response writer cannot be hijacked")
	}
	c, rw, err := h.Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
