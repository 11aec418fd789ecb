package web_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/custos-pam/custos/web"
)

func serve(srv *web.Server, remote, path, bearer string) (int, string) {
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr = remote
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// /metrics answers loopback callers, or with listen.metrics_token set
// only callers with the token; nobody else, anonymous or not.
func TestMetricsNeedLoopbackOrToken(t *testing.T) {
	srv := web.New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if st, _ := serve(srv, "127.0.0.1:5000", "/metrics", ""); st != http.StatusOK {
		t.Errorf("loopback without a token configured: %d", st)
	}
	if st, body := serve(srv, "192.0.2.7:5000", "/metrics", ""); st != http.StatusForbidden || strings.Contains(body, "go_gc") {
		t.Errorf("remote without a token configured: %d %.80s", st, body)
	}
	srv.ProtectMetrics("metrics-secret")
	for _, tt := range []struct {
		remote, bearer string
		want           int
	}{
		{"127.0.0.1:5000", "", http.StatusUnauthorized},
		{"192.0.2.7:5000", "wrong", http.StatusUnauthorized},
		{"192.0.2.7:5000", "metrics-secret", http.StatusOK},
	} {
		if st, _ := serve(srv, tt.remote, "/metrics", tt.bearer); st != tt.want {
			t.Errorf("from %s with %q: %d, want %d", tt.remote, tt.bearer, st, tt.want)
		}
	}
}

// A failing readiness check is named, its error text (addresses,
// internals) is not.
func TestReadyzHidesInternals(t *testing.T) {
	srv := web.New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv.AddCheck("store", func(context.Context) error {
		return errors.New("dial tcp 10.1.2.3:5432: password authentication failed for user custos")
	})
	st, body := serve(srv, "192.0.2.7:5000", "/readyz", "")
	if st != http.StatusServiceUnavailable || !strings.Contains(body, `"store"`) {
		t.Fatalf("readyz: %d %s", st, body)
	}
	for _, leak := range []string{"10.1.2.3", "password", "custos"} {
		if strings.Contains(body, leak) {
			t.Errorf("readyz answers anonymous callers with %q: %s", leak, body)
		}
	}
}
