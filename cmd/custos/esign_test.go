package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/identity"
)

// veraTOTP is the signing approver's TOTP secret (test only).
const veraTOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

// signingStack adds vera, an approver with a password, TOTP and a display
// name, and a role whose decisions are electronic signatures.
func signingStack(t *testing.T) *fullStack { return signingStackWith(t, "") }

// signingStackWith is signingStack with extra top-level config.
func signingStackWith(t *testing.T, extra string) *fullStack {
	return startFullStack(t, stackOptions{edit: func(cfg string) string {
		cfg = strings.Replace(cfg, "  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}\n",
			"  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}\n  - {name: vera, display_name: Vera Q. Signer, password: env:CUSTOS_E2E_PASSWORD, totp_secret: "+veraTOTP+"}\n", 1)
		cfg = strings.Replace(cfg, "{name: approvers, members: [bob]}", "{name: approvers, members: [bob, vera]}", 1)
		cfg = strings.Replace(cfg, "      - name: readwrite\n",
			"      - name: change\n        vault_role: readonly\n        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true, signature: required}\n      - name: readwrite\n", 1)
		return cfg + `
signatures:
  meanings:
    approve: ["approved for production change", "approved for investigation only"]
` + extra
	}})
}

func totpAt(t *testing.T, at time.Time) string {
	t.Helper()
	key, err := identity.ParseTOTPSecret(veraTOTP)
	if err != nil {
		t.Fatal(err)
	}
	return identity.TOTP(key, at)
}

// signClient waits longer than readyClient: a re-authentication checks an
// argon2id password, slow on a busy machine.
var signClient = &http.Client{Timeout: 30 * time.Second, Transport: readyClient.Transport}

// apiCall sends a JSON body with a bearer token and returns the status
// and body.
func apiCall(t *testing.T, b *brokerProc, user, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+savedToken(t, b, user))
	req.Header.Set("Content-Type", "application/json")
	resp, err := signClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func wantCode(t *testing.T, what string, status int, body []byte, code string) {
	t.Helper()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if status < 400 || e.Error.Code != code {
		t.Fatalf("%s: %d %s, want %s", what, status, body, code)
	}
}

// TestSignedApproval: on a role with policy.signature: required, a
// stolen bearer token alone cannot approve, a meaning outside the list
// is refused, a user without a second factor is told how to enable
// signing, the real CLI signs with the password and TOTP fed to its
// prompt, the same re-authentication replayed for another request is
// refused, and the signed approval's audit record and the session's
// evidence bundle show printed name, UTC time, meaning and method, bound
// to the request by its hash.
func TestSignedApproval(t *testing.T) {
	st := signingStack(t)
	b := st.b
	if _, errs, code := b.run("vera", e2ePassword+"\n", "login", "--user", "vera", "--password-stdin", "--totp", totpAt(t, time.Now().Add(-30*time.Second))); code != 0 {
		t.Fatalf("login vera: %s", errs)
	}
	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "change", "--for", "10m", "--reason", "CHG-42 fix index", "-o", "json"))
	approve := "/api/v1/requests/" + req.ID + "/approve"

	// A bearer token alone (stolen from vera) cannot sign.
	s, body := apiCall(t, b, "vera", "POST", approve, map[string]any{"comment": "lgtm"})
	wantCode(t, "unsigned approval", s, body, "signature_required")
	// Slack and scripts get the same answer through the CLI.
	b.refused("vera", "meaning", "approve", req.ID)
	// A meaning that is not configured.
	s, body = apiCall(t, b, "vera", "POST", approve, map[string]any{"signature": map[string]string{
		"meaning": "whatever", "password": e2ePassword, "totp": totpAt(t, time.Now())}})
	wantCode(t, "unlisted meaning", s, body, "meaning_not_allowed")
	// A password guess with the token counts as a failed sign-in.
	s, body = apiCall(t, b, "vera", "POST", approve, map[string]any{"signature": map[string]string{
		"meaning": "approved for production change", "password": "guess", "totp": "123456"}})
	wantCode(t, "wrong password", s, body, "reauth_failed")
	// bob has no second factor: signing is unavailable, and says why.
	_, errs, code := b.run("bob", e2ePassword+"\n\n", "approve", req.ID, "--meaning", "approved for production change")
	if code == 0 || !strings.Contains(errs, "signing_unavailable") || !strings.Contains(errs, "TOTP") {
		t.Fatalf("bob without TOTP: exit %d %q", code, errs)
	}

	// vera signs through the real CLI; the prompt reads password and code.
	signCode := totpAt(t, time.Now())
	out, errs, code := b.run("vera", e2ePassword+"\n"+signCode+"\n", "approve", req.ID, "--meaning", "approved for production change", "-o", "json")
	if code != 0 {
		t.Fatalf("signed approve: exit %d: %s\nbroker log:\n%s", code, errs, b.logs)
	}
	if decode[decided](t, out).Grant == nil {
		t.Fatalf("signed approval made no grant: %s", out)
	}
	signedAt := time.Now().UTC()

	// The same re-authentication replayed for another request is refused.
	req2 := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "change", "--for", "10m", "--reason", "CHG-43", "-o", "json"))
	s, body = apiCall(t, b, "vera", "POST", "/api/v1/requests/"+req2.ID+"/approve", map[string]any{"signature": map[string]string{
		"meaning": "approved for production change", "password": e2ePassword, "totp": signCode}})
	wantCode(t, "replayed re-authentication", s, body, "reauth_failed")

	// The request detail shows the signature.
	s, body = apiCall(t, b, "alice", "GET", "/api/v1/requests/"+req.ID, nil)
	var view struct {
		SignatureRequired bool `json:"signature_required"`
		Approvals         []struct {
			Signature *signatureJSON `json:"signature"`
		} `json:"approvals"`
	}
	if err := json.Unmarshal(body, &view); err != nil || s != 200 || !view.SignatureRequired || len(view.Approvals) != 1 || view.Approvals[0].Signature == nil {
		t.Fatalf("request detail: %d %s", s, body)
	}
	checkSignature(t, "request detail", *view.Approvals[0].Signature, req.ID, signedAt)

	// A session under the signed grant, then its evidence bundle.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	psql := exec.CommandContext(ctx, custosBin, "db", "connect", "demo-pg", "--role", "change", "--", "-X", "-At", "-c", "select 6*7")
	psql.Env = append(append(os.Environ(), "CUSTOS_URL="+b.url, "CUSTOS_CONFIG_DIR="+b.homes["alice"]), b.env...)
	if o, err := psql.CombinedOutput(); err != nil || !strings.Contains(string(o), "42") {
		t.Fatalf("psql under the signed grant: %v %q\nbroker log:\n%s", err, o, b.logs)
	}
	sessions := waitSessions(t, b, 1)
	s, zipped := apiCall(t, b, "sam", "GET", "/api/v1/sessions/"+sessions[0].ID+"/evidence", nil)
	if s != 200 {
		t.Fatalf("evidence: %d %s", s, zipped)
	}
	files := unzip(t, zipped)
	sigs := string(files["signatures.txt"])
	for _, want := range []string{"Signed by Vera Q. Signer (vera) at " + signedAt.Format("2006-01-02 15:"), " UTC", `meaning "approved for production change"`, "re-authenticated by password+totp", "approve of " + req.ID} {
		if !strings.Contains(sigs, want) {
			t.Errorf("signatures.txt lacks %q:\n%s", want, sigs)
		}
	}
	var reqJSON struct {
		Approvals []struct {
			Signature *signatureJSON `json:"signature"`
		} `json:"approvals"`
	}
	if err := json.Unmarshal(files["request.json"], &reqJSON); err != nil || len(reqJSON.Approvals) != 1 || reqJSON.Approvals[0].Signature == nil {
		t.Fatalf("request.json: %s", files["request.json"])
	}
	checkSignature(t, "evidence request.json", *reqJSON.Approvals[0].Signature, req.ID, signedAt)
	// The audit record of the approval, as the bundle holds it.
	var approval *signatureJSON
	for _, line := range strings.Split(strings.TrimSpace(string(files["audit-records.jsonl"])), "\n") {
		var r struct {
			Action  string `json:"action"`
			Outcome string `json:"outcome"`
			Details struct {
				RequestID string         `json:"request_id"`
				Signature *signatureJSON `json:"signature"`
			} `json:"details"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Action == "request.approve" && r.Outcome == "success" && r.Details.RequestID == req.ID {
			approval = r.Details.Signature
		}
	}
	if approval == nil {
		t.Fatalf("no signed request.approve record in the evidence:\n%s", files["audit-records.jsonl"])
	}
	checkSignature(t, "audit record", *approval, req.ID, signedAt)
	if approval.RecordHash != reqJSON.Approvals[0].Signature.RecordHash {
		t.Fatal("the audit record and the request hold different record hashes")
	}
	// Scripts sign without a prompt: --meaning, --password-stdin, --totp.
	req3 := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "change", "--for", "10m", "--reason", "CHG-44", "-o", "json"))
	if _, errs, code := b.run("vera", e2ePassword+"\n", "approve", req3.ID, "--meaning", "approved for investigation only",
		"--password-stdin", "--totp", totpAt(t, time.Now().Add(30*time.Second))); code != 0 {
		t.Fatalf("signed approve with flags: exit %d: %s", code, errs)
	}

	if strings.Contains(b.logs.String(), e2ePassword) {
		t.Fatal("the broker logged a signing password")
	}
}

type signatureJSON struct {
	Signer      string `json:"signer"`
	PrintedName string `json:"printed_name"`
	SignedAt    string `json:"signed_at"`
	Meaning     string `json:"meaning"`
	Method      string `json:"method"`
	Action      string `json:"action"`
	ObjectID    string `json:"object_id"`
	RecordHash  string `json:"record_hash"`
}

func checkSignature(t *testing.T, where string, s signatureJSON, reqID string, near time.Time) {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s.SignedAt)
	if err != nil || !strings.HasSuffix(s.SignedAt, "Z") || at.Sub(near).Abs() > time.Minute {
		t.Errorf("%s: signed_at %q is not a UTC time near %s", where, s.SignedAt, near)
	}
	if s.Signer != "vera" || s.PrintedName != "Vera Q. Signer" || s.Meaning != "approved for production change" ||
		s.Method != "password+totp" || s.Action != "approve" || s.ObjectID != reqID || !strings.HasPrefix(s.RecordHash, "sha256:") {
		t.Errorf("%s: signature %+v", where, s)
	}
}

func unzip(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("evidence is not a zip: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	if _, ok := out["SHA256SUMS"]; !ok {
		t.Fatal("evidence without SHA256SUMS")
	}
	return out
}
