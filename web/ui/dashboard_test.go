package webui_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/custos-pam/custos/web/ui/uitest"
)

// The Dashboard page: served to signed-in users (the API decides who sees
// data), in the navigation for security admins only, with a script that
// calls the indicators API and builds text only.
func TestIndicatorDashboardPage(t *testing.T) {
	env := uitest.Start(t)
	sam := login(t, env, "sam")
	anon := &client{t: t, env: env, http: env.Client()}
	if st, _, h := anon.raw("GET", "/ui/dashboard", nil, nil); st != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/ui/login") {
		t.Errorf("without sign-in: %d to %q", st, h.Get("Location"))
	}
	st, body, _ := sam.raw("GET", "/ui/dashboard?indicator=users_without_mfa", nil, nil)
	if st != http.StatusOK || !strings.Contains(string(body), `data-page="dashboard"`) {
		t.Fatalf("status %d, page %q", st, body)
	}
	if !strings.Contains(string(body), `href="/ui/dashboard" data-nav="dashboard" data-admin hidden`) {
		t.Error("no admin-only dashboard link in the nav")
	}
	st, js, _ := sam.raw("GET", "/ui/static/js/dashboard.js", nil, nil)
	if st != http.StatusOK || !strings.Contains(string(js), "/api/v1/indicators") {
		t.Fatalf("dashboard.js: status %d", st)
	}
	if strings.Contains(string(js), "innerHTML") {
		t.Error("dashboard.js parses markup")
	}
	// A requester signed in gets the shell, and the API refuses the data.
	alice := login(t, env, "alice")
	if st := alice.do("GET", "/api/v1/indicators", nil, nil); st != http.StatusForbidden {
		t.Errorf("requester reads the indicators: %d", st)
	}
}
