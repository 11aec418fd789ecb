//go:build browser

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestBrowserDashboard drives dashboard.mjs through the risk dashboard:
// the tiles, a crossed limit's tile opening its records, a record's link
// to the audit log, closing the open action with a comment, and the
// panel of who saw which fields unmasked with its link to the timeline.
func TestBrowserDashboard(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: run web/e2e/run.sh (apt-get install chromium)")
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: run web/e2e/run.sh")
	}
	env := uitest.Start(t)
	env.Seed(t, 0)
	um := env.UnmaskedSessions(t)
	// users_without_mfa > 0 is configured and crossed: one action.
	if c, err := env.Indicators.Evaluate(t.Context()); err != nil || len(c) != 1 {
		t.Fatalf("evaluate: %+v %v", c, err)
	}
	fixtures, _ := json.Marshal(map[string]any{"url": env.URL, "password": uitest.Password,
		"totp": uitest.Code("sam", time.Now()), "unmasked": um.Unmasked, "masked": um.Masked})
	artifacts, _ := filepath.Abs("artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "dashboard.mjs")
	cmd.Env = append(os.Environ(), "CUSTOS_E2E="+string(fixtures), "CUSTOS_E2E_ARTIFACTS="+artifacts)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dashboard browser spec failed: %v (screenshots in %s)", err, artifacts)
	}
	closes := env.AuditRecords(t, kri.AuditActionClose)
	if len(closes) != 1 || closes[0].Actor != "sam" || closes[0].Reason != "TOTP enrolment scheduled, CHG-9" {
		t.Fatalf("close from the browser not audited as sam with the comment: %+v", closes)
	}
}
