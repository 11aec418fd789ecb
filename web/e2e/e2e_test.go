//go:build browser

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestBrowser runs suite.mjs against a real broker UI in-process on
// loopback (web/ui/uitest: identity, access, recorder, seeded SSH and
// PostgreSQL recordings, a generated two-hour session and a live session
// fed from here).
func TestBrowser(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: run web/e2e/run.sh (apt-get install chromium)")
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: run web/e2e/run.sh")
	}
	began := time.Now()
	env := uitest.Start(t)
	if !env.UI.XtermAvailable() {
		t.Fatal("the UI was built without xterm.js: run web/ui/build.sh before the suite")
	}
	f := env.Seed(t, 2*time.Hour)
	live := env.StartLive(t, f.Grant, "ses_live_alice")
	if err := live.Type("uptime\r"); err != nil {
		t.Fatal(err)
	}
	// alice asks for 30 more minutes on her grant: bob sees and approves it.
	ext, err := env.Access.Extend(t.Context(), "alice", access.NewExtension{GrantID: f.Grant.ID, Duration: 30 * time.Minute,
		Reason: "INC-A still running"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("broker and fixtures ready in %v", time.Since(began))

	// The control endpoint lets the suite act as the user on the live
	// session and fetch a user's second factor: /totp?user=erin (default
	// sam), &fresh=1 for the next time step's code (a code already used to
	// sign in is refused).
	mux := http.NewServeMux()
	mux.HandleFunc("GET /totp", func(w http.ResponseWriter, r *http.Request) {
		user, at := r.URL.Query().Get("user"), time.Now()
		if user == "" {
			user = "sam"
		}
		if r.URL.Query().Get("fresh") != "" {
			at = at.Add(30 * time.Second)
		}
		io.WriteString(w, uitest.Code(user, at))
	})
	mux.HandleFunc("POST /type", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := live.Type(string(b)); err != nil {
			http.Error(w, err.Error(), http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ctl := httptest.NewServer(mux)
	defer ctl.Close()

	fixtures, _ := json.Marshal(map[string]any{
		"url": env.URL, "control": ctl.URL, "password": uitest.Password,
		"pending": f.Pending.ID, "ssh": f.SSH, "pg": f.PG, "long": f.Long, "daveSSH": f.DaveSSH, "live": live.ID,
		"longTick": uitest.LongTick(3600), "extension": ext.ID, "grant": f.Grant.ID,
	})
	artifacts, _ := filepath.Abs("artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "suite.mjs")
	cmd.Env = append(os.Environ(), "CUSTOS_E2E="+string(fixtures), "CUSTOS_E2E_ARTIFACTS="+artifacts)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser suite failed: %v (screenshots in %s)", err, artifacts)
	}

	// What the browser did is on the record.
	var approved, denied, terminated, confirmed, notCustodian bool
	for _, r := range env.AuditRecords(t, "") {
		switch {
		case r.Action == "breakglass.unseal.confirm" && r.Actor == "frank" && r.Outcome == "success":
			confirmed = true
		case r.Action == "breakglass.unseal.confirm" && r.Actor == "sam" && r.Outcome == "denied":
			notCustodian = true
		case r.Action == "request.approve" && r.Actor == "bob":
			approved = true
		case r.Action == "session.recording.read" && r.Actor == "alice" && r.Outcome == "denied":
			denied = true
		case r.Action == "session.terminate" && r.Actor == "sam" && r.Outcome == "success":
			terminated = true
		}
	}
	if !approved || !denied || !terminated || !confirmed || !notCustodian {
		t.Fatalf("audit after the suite: approve %v, refused read %v, terminate %v, unseal confirmed %v, non-custodian refused %v",
			approved, denied, terminated, confirmed, notCustodian)
	}
	t.Logf("browser suite passed in %v", time.Since(began))
}
