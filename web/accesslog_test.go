package web_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/web"
)

// TestAccessLogOmitsSecrets: a request carrying a token in its query
// string, a bearer token and a cookie gets one access log line with the
// method, route pattern, status, duration, bytes, client address and
// user, and none of the secrets, the query string or the raw path.
func TestAccessLogOmitsSecrets(t *testing.T) {
	e := newAuthEnv(t)
	secret, _, err := e.ids.Login(t.Context(), "alice", "alice-pw", "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	const inQuery, inCookie, inPath = "query-secret-4711", "cookie-secret-4712", "req_path4713"
	code := e.get(t, "/api/v1/whoami/"+inPath+"?token="+inQuery+"&x=1", func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+secret)
		r.AddCookie(&http.Cookie{Name: "custos_session", Value: inCookie})
	})
	if code != http.StatusOK {
		t.Fatalf("whoami: %d", code)
	}
	// A refused bearer token is not logged either.
	if code := e.get(t, "/api/v1/whoami?access_token="+inQuery, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer cst_"+strings.Repeat("Z", 43))
	}); code != http.StatusUnauthorized {
		t.Fatalf("bogus token: %d", code)
	}
	logs := e.logs.String()
	for _, leak := range []string{secret, inQuery, inCookie, inPath, "cst_ZZZZ", "token=", "x=1"} {
		if strings.Contains(logs, leak) {
			t.Errorf("the log carries %q:\n%s", leak, logs)
		}
	}
	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "http request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("want one access log line per request, got %d:\n%s", len(lines), logs)
	}
	ok, refused := lines[0], lines[1]
	for k, want := range map[string]any{"method": "GET", "route": "GET /api/v1/whoami/{id}", "status": 200.0,
		"client": "127.0.0.1", "user": "alice"} {
		if ok[k] != want {
			t.Errorf("access log %s = %v, want %v", k, ok[k], want)
		}
	}
	if b, _ := ok["bytes"].(float64); b <= 0 {
		t.Errorf("access log bytes = %v", ok["bytes"])
	}
	if _, has := ok["duration_ms"]; !has {
		t.Error("access log has no duration")
	}
	if refused["status"] != 401.0 || refused["route"] != "GET /api/v1/whoami" {
		t.Errorf("refused request logged as %v", refused)
	}
	if _, has := refused["user"]; has {
		t.Errorf("a refused caller is logged as a user: %v", refused)
	}
}

// TestHTTPMetricsByRoutePattern: request durations are labelled with
// the matched pattern, never the raw path, and requests no route matches
// share one label value.
func TestHTTPMetricsByRoutePattern(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := web.New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	srv.SetMetrics(m)
	srv.HandleFunc("GET /api/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {})
	for _, p := range []string{"/api/v1/things/a", "/api/v1/things/b", "/nowhere/c", "/nowhere/d"} {
		srv.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "custos_http_request_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(labels, ",")] = mt.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{"code=200,route=GET /api/v1/things/{id}": 2, "code=404,route=unmatched": 2}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("series %v, want %v", got, want)
		}
	}
}
