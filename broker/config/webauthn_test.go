package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestStepUpAndWebAuthnValidation(t *testing.T) {
	const base = `
users: [{name: bob}]
groups: [{name: ops, members: [bob]}]
targets:
  - name: db
    kind: postgres
    address: 127.0.0.1:5432
    roles: [{name: rw, policy: {approvers: [ops], step_up: %s}}]
identity:
  webauthn: {rp_id: %q, origins: [%q]}
  step_up: {terminate_session: %s}
`
	tests := []struct {
		name                       string
		stepUp, rpID, origin, term string
		wantErr                    string
	}{
		{"all set", "passkey", "custos.example.com", "https://custos.example.com", "any", ""},
		{"totp role", "totp", "", "https://custos.example.com:8443", "totp", ""},
		{"unknown role step_up", "sms", "", "https://custos.example.com", "any", "policy.step_up: must be passkey, totp or any"},
		{"unknown terminate step_up", "any", "", "https://custos.example.com", "fingerprint", "identity.step_up.terminate_session"},
		{"rp_id with port", "passkey", "custos.example.com:8443", "https://custos.example.com", "any", "identity.webauthn.rp_id"},
		{"origin with path", "passkey", "", "https://custos.example.com/ui", "any", "identity.webauthn.origins"},
	}
	for _, tc := range tests {
		y := fmt.Appendf(nil, base, tc.stepUp, tc.rpID, tc.origin, tc.term)
		_, err := Parse(y)
		if tc.wantErr == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestWebAuthnDefaults(t *testing.T) {
	got := WebAuthn{}.Resolved("https://custos.example.com:8443/")
	want := WebAuthn{RPID: "custos.example.com", RPName: "Custos", Origins: []string{"https://custos.example.com:8443"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Resolved = %+v, want %+v", got, want)
	}
}
