package evidence

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

// TestSignatureLines: signatures.txt has one manifestation per signed
// decision (approvals and denials), none for unsigned ones, and is left
// out when nothing is signed.
func TestSignatureLines(t *testing.T) {
	at := time.Date(2026, 12, 5, 10, 4, 31, 0, time.FixedZone("CET", 3600))
	sig := &broker.Signature{Signer: "vera", PrintedName: "Vera Q. Signer", SignedAt: at, Meaning: "approved for production change",
		Method: "password+totp", Action: "approve", ObjectID: "req_1", RecordHash: "sha256:ab"}
	for name, tc := range map[string]struct {
		req  *broker.Request
		want string
	}{
		"no request": {nil, ""},
		"unsigned":   {&broker.Request{Approvals: []broker.Decision{{By: "bob"}}}, ""},
		"signed": {&broker.Request{Approvals: []broker.Decision{{By: "bob"}, {By: "vera", Signature: sig}}},
			`Signed by Vera Q. Signer (vera) at 2026-12-05 09:04:31 UTC, meaning "approved for production change", re-authenticated by password+totp; approve of req_1, record sha256:ab` + "\n"},
		"denial": {&broker.Request{Denials: []broker.Decision{{By: "vera", Signature: sig}}}, "Signed by Vera Q. Signer"},
	} {
		got := string(signatureLines(tc.req))
		if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
