//go:build browser

package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/custos-pam/custos/recorder/evidence/evidencetest"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestEvidenceBrowser: the evidence bundle of a seeded busy month (3000
// sessions on demo-pg), downloaded through the API, validates against
// docs/evidence.schema.json and opens offline in chromium (evidence.mjs);
// the web UI's evidence page creates a share link that works anonymously
// until it is revoked, and all of it is audited.
func TestEvidenceBrowser(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: run web/e2e/run.sh (apt-get install chromium)")
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: run web/e2e/run.sh")
	}
	env := uitest.Start(t)
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	f := env.Seed(t, 0)
	m := evidencetest.Seed(t, env.State, evidencetest.Options{Target: "demo-pg", From: from, Sessions: 3000})

	sam, _, err := env.Identity.Tokens().Issue(t.Context(), "sam", "api", "", time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", env.URL+"/api/v1/evidence?target=demo-pg&from=2026-10-01&to=2026-11-01", nil)
	req.Header.Set("Authorization", "Bearer "+sam)
	res, err := env.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("evidence: %d %.300s", res.StatusCode, body)
	}
	t.Logf("bundle of %d sessions, %d bytes, in %v", len(m.Sessions), len(body), time.Since(began).Round(time.Millisecond))

	artifacts, _ := filepath.Abs("artifacts")
	dir := filepath.Join(artifacts, "evidence-bundle")
	_ = os.RemoveAll(dir)
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("zip entry %q escapes the bundle", f.Name)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(filepath.Join("..", "..", "docs", "evidence.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(dir, "evidence.json"))
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("evidence.json: %v", err)
	}

	cookie, _, err := env.Identity.Tokens().Issue(t.Context(), "sam", "web", "", time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fixtures, _ := json.Marshal(map[string]any{"url": env.URL, "cookie": cookie, "dir": dir, "target": "demo-pg",
		"sessions": len(m.Sessions), "from": "2026-10-01", "to": "2026-11-01", "ssh": f.SSH})
	cmd := exec.Command("node", "evidence.mjs")
	cmd.Env = append(os.Environ(), "CUSTOS_E2E="+string(fixtures), "CUSTOS_E2E_ARTIFACTS="+artifacts)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("evidence spec failed: %v (screenshots in %s)", err, artifacts)
	}

	seen := map[string]bool{}
	for _, r := range env.AuditRecords(t, "share.") {
		seen[r.Action+" "+r.Outcome] = true
	}
	for _, k := range []string{"share.create success", "share.use success", "share.revoke success", "share.use denied"} {
		if !seen[k] {
			t.Errorf("no %s audit record", k)
		}
	}
}
