package cli

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/retrieval"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// cliAs runs the command line against env as user, returning stdout.
func cliAs(t *testing.T, env *uitest.Env, user string) func(args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("CUSTOS_CONFIG_DIR", dir)
	t.Setenv("CUSTOS_URL", "")
	secret, tok, err := env.Identity.Tokens().Issue(t.Context(), user, "api", "", time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := saveToken(savedToken{URL: env.URL, User: user, Token: secret, ExpiresAt: tok.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: env.Server.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}
		root := newRoot(g)
		root.SetArgs(append([]string{"--url", env.URL, "--ca-cert", ca}, args...))
		err := root.Execute()
		if err != nil {
			t.Logf("custos %v: %v (%s)", args, err, errb.String())
		}
		return out.String(), err
	}
}

// TestEvidenceShareDrillCLI: custos evidence writes the bundle to a
// file; custos share create prints a link that works anonymously, list
// shows it, revoke ends it; custos drill retrieval asks its questions
// through the API, all within five minutes here, and files the run.
func TestEvidenceShareDrillCLI(t *testing.T) {
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	custos := cliAs(t, env, "sam")
	day := time.Now().UTC()
	from, to := day.AddDate(0, 0, -1).Format("2006-01-02"), day.AddDate(0, 0, 2).Format("2006-01-02")

	out := filepath.Join(t.TempDir(), "bundle.zip")
	if _, err := custos("evidence", "--target", "demo-ssh", "--from", from, "--to", to, "-f", out); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatalf("custos evidence wrote no zip: %v", err)
	}
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
	}
	zr.Close()
	if !names["evidence.json"] || !names["index.html"] {
		t.Errorf("bundle files %v", names)
	}

	link, err := custos("share", "create", "--session", f.SSH, "--for", "2h", "--note", "cli test")
	if err != nil {
		t.Fatal(err)
	}
	link = strings.TrimSpace(link)
	res, err := env.Client().Get(link)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("anonymous GET of %q: %v %v", link, res, err)
	}
	res.Body.Close()
	list, err := custos("share", "list", "-o", "json")
	var links []shareLink
	if err != nil || json.Unmarshal([]byte(list), &links) != nil || len(links) != 1 || links[0].Uses != 1 || links[0].State != "active" {
		t.Fatalf("share list: %s", list)
	}
	if _, err := custos("share", "revoke", links[0].ID, "--reason", "done"); err != nil {
		t.Fatal(err)
	}
	if res, err := env.Client().Get(link); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("revoked link: %v %v", res.StatusCode, err)
	}

	report, err := custos("drill", "retrieval", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var run retrieval.Run
	if err := json.Unmarshal([]byte(report), &run); err != nil || len(run.Questions) != 4 || run.PassRate != 1 {
		t.Fatalf("drill retrieval: %s", report)
	}
	t.Logf("retrieval drill: %+v", run.Questions)
	s, err := retrieval.Load(t.Context(), env.State)
	if err != nil || len(s.Runs) != 1 || s.Runs[0].By != "sam" {
		t.Fatalf("filed runs %+v %v", s.Runs, err)
	}
	if recs := env.AuditRecords(t, "drill.retrieval"); len(recs) != 1 {
		t.Errorf("drill audit records: %d", len(recs))
	}

	// Not for a requester.
	if _, err := cliAs(t, env, "alice")("drill", "retrieval"); err == nil || !strings.Contains(err.Error(), "security") {
		t.Errorf("alice's drill: %v", err)
	}
}
