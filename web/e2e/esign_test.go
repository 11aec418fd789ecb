//go:build browser

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestBrowserSignedApproval approves a request of a role whose decisions
// are electronic signatures in Chromium: the pending row offers the
// meaning and the re-authentication fields, an approval without them is
// refused, and with them the decision is signed; a second request is
// signed with a passkey from Chromium's virtual authenticator (esign.mjs
// drives the browser).
func TestBrowserSignedApproval(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: run web/e2e/run.sh (apt-get install chromium)")
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: run web/e2e/run.sh")
	}
	env := uitest.Start(t)
	// demo-pg/readonly becomes a signed role that sam (who has TOTP) approves.
	for i := range env.Config.Targets {
		for j := range env.Config.Targets[i].Roles {
			if r := &env.Config.Targets[i].Roles[j]; env.Config.Targets[i].Name == "demo-pg" && r.Name == "readonly" {
				r.Policy.Signature = config.SignatureRequired
				r.Policy.Approvers = append(r.Policy.Approvers, "sam")
			}
		}
	}
	env.Config.Signatures.Meanings = map[string][]string{config.SignApprove: {"approved for investigation only", "approved for production change"}}
	signer := esign.New(esign.Options{Config: config.NewLive(env.Config), Reauth: env.Identity, Names: env.Identity.Directory()})
	signer.SetPasskeys(env.StepUp)
	env.Access.SetSigner(signer)
	req, err := env.Access.Create(t.Context(), "alice", access.NewRequest{Target: "demo-pg", Role: "readonly", Duration: time.Hour, Reason: "CHG-9"})
	if err != nil {
		t.Fatal(err)
	}
	req2, err := env.Access.Create(t.Context(), "alice", access.NewRequest{Target: "demo-pg", Role: "readonly", Duration: time.Hour, Reason: "CHG-10"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// LocalURL: the passkeys' relying party is localhost.
	fixtures, _ := json.Marshal(map[string]any{"url": env.LocalURL, "password": uitest.Password, "request": req.ID, "passkeyRequest": req2.ID,
		"login": uitest.Code("sam", now), "sign": uitest.Code("sam", now.Add(30*time.Second))})
	artifacts, _ := filepath.Abs("artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "esign.mjs")
	cmd.Env = append(os.Environ(), "CUSTOS_E2E="+string(fixtures), "CUSTOS_E2E_ARTIFACTS="+artifacts)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("signing browser test failed: %v (screenshots in %s)", err, artifacts)
	}
	got, err := env.Access.GetRequest(t.Context(), req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Approvals) != 1 || got.Approvals[0].Signature == nil {
		t.Fatalf("request after the browser: %+v", got)
	}
	s := got.Approvals[0].Signature
	if s.Signer != "sam" || s.Meaning != "approved for production change" || s.Method != esign.MethodPasswordTOTP {
		t.Fatalf("signature %+v", s)
	}
	got, err = env.Access.GetRequest(t.Context(), req2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Approvals) != 1 || got.Approvals[0].Signature == nil || got.Approvals[0].Signature.Method != esign.MethodPasskey {
		t.Fatalf("request signed with a passkey: %+v", got.Approvals)
	}
}
