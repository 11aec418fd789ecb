package policy

import (
	"errors"
	"testing"
)

func TestStepUpSatisfied(t *testing.T) {
	for _, tc := range []struct {
		required, method string
		want             bool
	}{
		{"", "", true},
		{"", "totp", true},
		{"passkey", "", false},
		{"passkey", "totp", false},
		{"passkey", "passkey", true},
		{"totp", "", false},
		{"totp", "totp", true},
		{"totp", "passkey", true},
		{"any", "totp", true},
		{"any", "passkey", true},
		{"any", "password", false},
		{"bogus", "passkey", false},
	} {
		if got := StepUpSatisfied(tc.required, tc.method); got != tc.want {
			t.Errorf("StepUpSatisfied(%q, %q) = %v, want %v", tc.required, tc.method, got, tc.want)
		}
		err := CheckStepUp(tc.required, tc.method, "approving")
		var pe *Error
		if tc.want != (err == nil) || (err != nil && (!errors.As(err, &pe) || pe.Code != CodeStepUpRequired)) {
			t.Errorf("CheckStepUp(%q, %q) = %v", tc.required, tc.method, err)
		}
	}
}
