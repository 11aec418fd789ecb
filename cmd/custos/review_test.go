package main

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/review"
	"github.com/custos-pam/custos/deploy/devstack"
)

// reviewConfig: rita reviews access (password and TOTP); two failed
// sign-ins block a user. %d is the HTTP port, %s the data dir.
const reviewConfig = `
listen: {http: "127.0.0.1:%d", data_dir: "%s"}
auth: {max_failures: 2}
users:
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}
  - {name: bob, password: env:CUSTOS_E2E_PASSWORD}
  - {name: carol, password: env:CUSTOS_E2E_PASSWORD}
  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}
  - {name: rita, email: rita@example.test, password: env:CUSTOS_E2E_PASSWORD, totp_secret: env:CUSTOS_E2E_TOTP_RITA}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob]}
  - {name: security, members: [sam]}
  - {name: auditors, members: [rita]}
security_admins: [security]
reviews: {reviewers: [auditors]}
targets:
  - name: demo-pg
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: readwrite
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h}
`

// TestAccessReviewEndToEnd: the real broker and CLI. Review 1 lists
// everyone as new and is attested with a signature; an approver is added
// by a config reload (SIGHUP); review 2 shows exactly that as a "+
// approver" line, and its attestation's audit record carries the printed
// name, UTC time, meaning, method and snapshot hash. A wrong password is
// refused and counts against the sign-in limiter; the export verifies
// the chain; custos_review_overdue follows.
func TestAccessReviewEndToEnd(t *testing.T) {
	dir := t.TempDir()
	port := devstack.FreePort(t)
	var raw [20]byte
	_, _ = rand.Read(raw[:])
	secret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:])
	key, _ := identity.ParseTOTPSecret(secret)
	// Codes one step apart: the broker refuses a code twice.
	code := func(steps int) string { return identity.TOTP(key, time.Now().Add(time.Duration(steps)*30*time.Second)) }
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("http://127.0.0.1:%d", port),
		homes: map[string]string{}, env: []string{"CUSTOS_E2E_TOTP_RITA=" + secret}}
	cfg := fmt.Sprintf(reviewConfig, port, filepath.Join(dir, "data"))
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() { b.stop(15) })
	if _, errs, c := b.run("rita", e2ePassword+"\n", "login", "--user", "rita", "--password-stdin", "--totp", code(-1)); c != 0 {
		t.Fatalf("login rita: %s", errs)
	}
	b.login("sam", "alice")
	overdue := func() string {
		t.Helper()
		resp, err := http.Get(b.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "custos_review_overdue ") {
				return strings.TrimPrefix(l, "custos_review_overdue ")
			}
		}
		t.Fatalf("no custos_review_overdue on /metrics")
		return ""
	}
	if got := overdue(); got != "1" {
		t.Fatalf("custos_review_overdue before any review: %s, want 1", got)
	}
	if out := b.ok("sam", "review", "status"); !strings.Contains(out, "OVERDUE: no access review has been attested yet") {
		t.Errorf("review status before any review:\n%s", out)
	}

	// Only reviewers conduct reviews: security admins are not reviewers
	// here, requesters never.
	b.refused("alice", "forbidden", "review", "start")
	b.refused("sam", "forbidden", "review", "start")

	r1 := decode[review.Review](t, b.ok("rita", "review", "start", "--name", "Q3-2026", "-o", "json"))
	texts := func(r review.Review) []string {
		var out []string
		for _, l := range r.Lines {
			out = append(out, l.Text)
		}
		return out
	}
	for _, want := range []string{"+ requester alice on demo-pg/readwrite (via dbas)", "+ approver bob on demo-pg/readwrite (via approvers)"} {
		if !strings.Contains(strings.Join(texts(r1), "\n"), want) {
			t.Fatalf("first review lacks %q: %q", want, texts(r1))
		}
	}
	if !strings.Contains(strings.Join(texts(r1), "\n"), "of rita (age 0d)") {
		t.Errorf("first review lists no standing token of rita: %q", texts(r1))
	}
	b.refused("rita", "review_open", "review", "start")
	b.ok("rita", "review", "attest-line", r1.ID, "1", "--comment", "alice is a DBA")
	if _, errs, c := b.run("rita", e2ePassword+"\n", "review", "attest", r1.ID, "--meaning", "reviewed, no concerns",
		"--password-stdin", "--totp", code(0)); c != 0 {
		t.Fatalf("attest review 1: exit %d: %s\n%s", c, errs, b.logs)
	}
	if got := overdue(); got != "0" {
		t.Fatalf("custos_review_overdue after an attested review: %s, want 0", got)
	}

	// carol becomes an approver.
	b.reload(strings.Replace(cfg, "{name: approvers, members: [bob]}", "{name: approvers, members: [bob, carol]}", 1), `"msg":"config reloaded"`)
	r2 := decode[review.Review](t, b.ok("rita", "review", "start", "--name", "Q4-2026", "-o", "json"))
	if r2.Base != r1.ID {
		t.Fatalf("review 2 compares with %q, want the attested review %s", r2.Base, r1.ID)
	}
	if got := texts(r2); len(got) != 1 || got[0] != "+ approver carol on demo-pg/readwrite (via approvers)" {
		t.Fatalf("review 2 diff: %q, want only the added approver", got)
	}
	b.ok("rita", "review", "flag", r2.ID, "1", "--comment", "carol is not on the approvers list of the change board")
	if out := b.ok("rita", "review", "show", r2.ID); !strings.Contains(out, "   1  + approver carol on demo-pg/readwrite (via approvers)\n        flag by rita: carol is not") {
		t.Errorf("review show:\n%s", out)
	}

	// A wrong password: refused, no signature.
	if _, errs, c := b.run("rita", "not the password\n", "review", "attest", r2.ID, "--meaning", "reviewed, concerns raised",
		"--password-stdin", "--totp", "000000"); c == 0 || !strings.Contains(errs, "reauth_failed") {
		t.Fatalf("attest with a wrong password: exit %d: %s", c, errs)
	}
	if got := decode[review.Review](t, b.ok("rita", "review", "show", r2.ID, "-o", "json")); got.State != review.StateOpen || got.Attestation != nil {
		t.Fatalf("a wrong password attested the review: %+v", got.Attestation)
	}
	// The right one signs.
	if _, errs, c := b.run("rita", e2ePassword+"\n", "review", "attest", r2.ID, "--meaning", "reviewed, concerns raised",
		"--password-stdin", "--totp", code(1)); c != 0 {
		t.Fatalf("attest review 2: exit %d: %s\n%s", c, errs, b.logs)
	}
	var att *auditRec
	for _, r := range decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "review.", "--limit", "100", "-o", "json")) {
		if r.Action == "review.attest" && r.Outcome == "success" && r.Details["snapshot_hash"] == r2.SnapshotHash {
			att = &r
		}
	}
	if att == nil {
		t.Fatalf("no review.attest record for review 2 with its snapshot hash")
	}
	d := att.Details
	if d["printed_name"] != "rita" || d["signer"] != "rita" || d["meaning"] != "reviewed, concerns raised" || d["method"] != "password+totp" {
		t.Errorf("attestation record: %v", d)
	}
	if ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(d["time"])); err != nil || !strings.HasSuffix(fmt.Sprint(d["time"]), "Z") || time.Since(ts) > time.Minute {
		t.Errorf("attestation time %v is not a recent UTC time", d["time"])
	}
	if d["flagged"] != float64(1) {
		t.Errorf("attestation flagged %v lines, want 1", d["flagged"])
	}

	if out := b.ok("sam", "review", "status"); !strings.Contains(out, "next review due") || !strings.Contains(out, "Q4-2026") {
		t.Errorf("review status after attestation:\n%s", out)
	}
	ex := decode[review.Export](t, b.ok("rita", "review", "export", r2.ID, "-o", "json"))
	if !ex.Verified || len(ex.Chain) != 2 || ex.Chain[1].PrevHash != ex.Chain[0].SnapshotHash || ex.Review.Attestation == nil {
		t.Fatalf("export: verified %v %s, chain %+v", ex.Verified, ex.Problem, ex.Chain)
	}

	// Wrong passwords at attestation count against sign-in: after
	// auth.max_failures of them even the right password cannot sign in.
	r3 := decode[review.Review](t, b.ok("rita", "review", "start", "-o", "json"))
	for range 2 {
		if _, _, c := b.run("rita", "guess\n", "review", "attest", r3.ID, "--meaning", "reviewed, no concerns", "--password-stdin", "--totp", "000000"); c == 0 {
			t.Fatal("a guessed password attested")
		}
	}
	if _, errs, c := b.run("rita", e2ePassword+"\n", "login", "--user", "rita", "--password-stdin", "--totp", code(2)); c == 0 || !strings.Contains(errs, "too_many_attempts") {
		t.Fatalf("sign-in after 2 wrong attestation passwords: exit %d %s, want too_many_attempts", c, errs)
	}
	denied := 0
	for _, r := range decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "auth.reauth", "--limit", "100", "-o", "json")) {
		if r.Outcome == "denied" {
			denied++
		}
	}
	if denied < 3 {
		t.Errorf("auth.reauth denied records: %d, want every wrong password (3)", denied)
	}
}
