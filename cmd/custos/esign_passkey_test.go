package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/identity/passkeytest"
)

// TestPasskeySignedApproval: the broker as deployed signs with a passkey.
// vera registers a passkey; a signature's passkey answers a challenge
// begun for action "signature" and object "approve:REQ": one begun for
// another request or for the denial is refused, the bound one approves
// with method passkey (no password or code), and the same assertion
// replayed is refused as used. The approval's audit record says passkey.
func TestPasskeySignedApproval(t *testing.T) {
	st := signingStackWith(t, `
identity:
  webauthn: {rp_id: localhost, origins: ["https://localhost"]}
`)
	b := st.b
	if _, errs, code := b.run("vera", e2ePassword+"\n", "login", "--user", "vera", "--password-stdin", "--totp", totpAt(t, time.Now())); code != 0 {
		t.Fatalf("login vera: %s", errs)
	}
	key := passkeytest.New("https://localhost", "localhost")
	s, body := apiCall(t, b, "vera", "POST", "/api/v1/passkeys/begin", nil)
	if s != 200 {
		t.Fatalf("passkey registration: %d %s", s, body)
	}
	cred, err := key.Register(body)
	if err != nil {
		t.Fatal(err)
	}
	if s, body := apiCall(t, b, "vera", "POST", "/api/v1/passkeys", map[string]any{"name": "vera's key", "credential": json.RawMessage(cred)}); s != 201 {
		t.Fatalf("passkey registration: %d %s", s, body)
	}
	assertion := func(object string) json.RawMessage {
		t.Helper()
		s, body := apiCall(t, b, "vera", "POST", "/api/v1/stepup/begin", map[string]string{"action": "signature", "object_id": object})
		if s != 200 {
			t.Fatalf("step-up begin %s: %d %s", object, s, body)
		}
		a, err := key.Assert(body)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	request := func(reason string) string {
		return decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "change", "--for", "10m", "--reason", reason, "-o", "json")).ID
	}
	approve := func(id string, a json.RawMessage) (int, []byte) {
		return apiCall(t, b, "vera", "POST", "/api/v1/requests/"+id+"/approve", map[string]any{"signature": map[string]any{
			"meaning": "approved for production change", "passkey": a}})
	}
	req1, req2 := request("CHG-51"), request("CHG-52")

	s, body = approve(req2, assertion("approve:"+req1))
	wantCode(t, "a passkey begun for another request", s, body, "step_up_required")
	s, body = approve(req1, assertion("deny:"+req1))
	wantCode(t, "a passkey begun for the denial", s, body, "step_up_required")

	bound := assertion("approve:" + req1)
	s, body = approve(req1, bound)
	if s != 200 {
		t.Fatalf("approval signed with a bound passkey: %d %s\nbroker log:\n%s", s, body, b.logs)
	}
	var res struct {
		Request struct {
			Approvals []struct {
				Signature *signatureJSON `json:"signature"`
			} `json:"approvals"`
		} `json:"request"`
		Grant *struct{ ID string } `json:"grant"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Grant == nil || len(res.Request.Approvals) != 1 || res.Request.Approvals[0].Signature == nil {
		t.Fatalf("signed approval: %s", body)
	}
	if sig := res.Request.Approvals[0].Signature; sig.Method != "passkey" || sig.Signer != "vera" || sig.PrintedName != "Vera Q. Signer" || sig.ObjectID != req1 {
		t.Errorf("signature %+v", sig)
	}
	s, body = approve(req2, bound)
	wantCode(t, "the same assertion replayed", s, body, "step_up_required")
	if !strings.Contains(string(body), "already used") {
		t.Errorf("the replay is not refused as used: %s", body)
	}

	var signed map[string]any
	for _, r := range decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "request.approve", "--limit", "100", "-o", "json")) {
		if r.Outcome == "success" && r.Details["request_id"] == req1 {
			signed, _ = r.Details["signature"].(map[string]any)
		}
	}
	if signed == nil || signed["method"] != "passkey" || signed["meaning"] != "approved for production change" || signed["printed_name"] != "Vera Q. Signer" {
		t.Fatalf("request.approve audit record signature: %v", signed)
	}
}
