//go:build browser

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestBrowserPasskeys registers a passkey in Chromium with its virtual
// authenticator and approves requests for demo-pg/admin, whose policy
// says step_up: passkey: refused without an assertion, approved with one
// bound to the request, refused with one for another request or
// replayed. passkeys.mjs drives the browser.
func TestBrowserPasskeys(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: run web/e2e/run.sh (apt-get install chromium)")
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: run web/e2e/run.sh")
	}
	env := uitest.StartWith(t, uitest.Options{StepUp: "passkey"})
	var ids []string
	for range 3 {
		r, err := env.Access.Create(t.Context(), "alice", access.NewRequest{Target: "demo-pg", Role: "admin", Duration: time.Hour,
			Reason: "INC-88 schema change"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	fixtures, _ := json.Marshal(map[string]any{"url": env.LocalURL, "user": "bob", "password": uitest.Password, "requests": ids})
	artifacts, _ := filepath.Abs("artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "passkeys.mjs")
	cmd.Env = append(os.Environ(), "CUSTOS_E2E="+string(fixtures), "CUSTOS_E2E_ARTIFACTS="+artifacts)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("passkeys browser test failed: %v (screenshots in %s)", err, artifacts)
	}
	// The store agrees with the browser: two approvals, one still pending.
	want := []broker.RequestState{broker.RequestApproved, broker.RequestApproved, broker.RequestPending}
	for i, id := range ids {
		var r broker.Request
		if err := env.State.View(t.Context(), func(tx broker.Tx) error {
			var err error
			r, err = tx.GetRequest(id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if r.State != want[i] {
			t.Errorf("request %d: %s, want %s", i+1, r.State, want[i])
		}
	}
	if n := len(env.AuditRecords(t, "auth.passkey.register")); n != 1 {
		t.Errorf("%d auth.passkey.register records, want 1", n)
	}
	// bob set up an authenticator app: his sign-ins now need its code.
	if n := len(env.AuditRecords(t, "auth.totp.enrol")); n != 1 {
		t.Errorf("%d auth.totp.enrol records, want 1", n)
	}
	if _, _, err := env.Identity.Login(t.Context(), "bob", uitest.Password, "", "127.0.0.1"); err == nil {
		t.Error("bob signed in without his new TOTP code")
	}
}
