package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/custos-pam/custos/web/ui/uitest"
)

// Profiles are off unless listen.pprof is set: even a security admin gets
// 404, and nothing of the profile. On, only security admins get them
// (the rest of the roles: TestAuthorizationTable).
func TestPprofOffByDefault(t *testing.T) {
	env := uitest.Start(t)
	if env.Config.Listen.Pprof {
		t.Fatal("listen.pprof is on without being configured")
	}
	x := &authzEnv{env: env}
	for _, mode := range []bool{true, false} {
		sam := signIn(t, x, security, mode)
		alice := signIn(t, x, requester, mode)
		for _, path := range []string{"/api/v1/debug/pprof/", "/api/v1/debug/pprof/heap", "/api/v1/debug/pprof/goroutine?debug=2"} {
			env.Config.Listen.Pprof = false
			if got, body := sam.do(t, x, http.MethodGet, path, nil); got != http.StatusNotFound || strings.Contains(string(body), "goroutine") {
				t.Errorf("%s with pprof off, as security: %d %.100s, want 404", path, got, body)
			}
			env.Config.Listen.Pprof = true
			if got, _ := sam.do(t, x, http.MethodGet, path, nil); got != http.StatusOK {
				t.Errorf("%s with pprof on, as security: %d, want 200", path, got)
			}
			if got, body := alice.do(t, x, http.MethodGet, path, nil); got != http.StatusForbidden || strings.Contains(string(body), "goroutine") {
				t.Errorf("%s with pprof on, as a requester: %d %.100s, want 403", path, got, body)
			}
		}
		env.Config.Listen.Pprof = false
	}
	// The default mux net/http/pprof registers on is not what the broker serves.
	res, err := env.Client().Get(env.URL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatal("GET /debug/pprof/ answered 200: the default mux is served")
	}
}
