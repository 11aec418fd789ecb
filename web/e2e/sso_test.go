//go:build browser

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/web/ui/uitest"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// TestBrowserSSO signs in through single sign-on in Chromium: the login
// page's "Sign in with Sponsor IdP" link, the real provider's login
// form, back to the broker, and into the UI with a session whose method
// is sso and whose groups come from the provider (dora: dbas, so she may
// request). sso.mjs drives the browser.
func TestBrowserSSO(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: run web/e2e/run.sh (apt-get install chromium)")
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: run web/e2e/run.sh")
	}
	op := devstack.StartOIDC(t, devstack.OIDCOptions{Users: []devstack.OIDCUser{
		{ID: "u-dora", Username: "dora", Password: "dora-sso-pw", Email: "dora@sponsor.example", Groups: []string{"idp-dbas"}},
	}})
	t.Setenv("CUSTOS_E2E_OIDC_SECRET", op.Client("custos").Secret)
	env := uitest.StartWith(t, uitest.Options{SSO: &config.OIDC{Name: "Sponsor IdP", Issuer: op.Issuer, ClientID: "custos",
		ClientSecret: "env:CUSTOS_E2E_OIDC_SECRET", GroupMap: map[string]string{"idp-dbas": "dbas"}}})

	fixtures, _ := json.Marshal(map[string]any{"url": env.URL, "user": "dora", "password": "dora-sso-pw"})
	artifacts, _ := filepath.Abs("artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "sso.mjs")
	cmd.Env = append(os.Environ(), "CUSTOS_E2E="+string(fixtures), "CUSTOS_E2E_ARTIFACTS="+artifacts)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sso browser test failed: %v (screenshots in %s)", err, artifacts)
	}
	// The sign-in is on the record as dora's, by sso, and the directory
	// knows her in the provider's mapped group.
	found := false
	for _, r := range env.AuditRecords(t, "auth.login") {
		if r.Actor == "dora" && r.Outcome == "success" {
			found = true
		}
	}
	if !found {
		t.Error("no successful auth.login record for dora")
	}
	if g := env.Access.GroupsOf("dora"); !slices.Equal(g, []string{"dbas"}) {
		t.Errorf("dora's groups: %v", g)
	}
}
