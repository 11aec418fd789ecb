package app

import (
	"testing"

	"github.com/custos-pam/custos/broker/config"
)

// TestBreakGlassPasskeyStepUpNeedsRelyingParty: a broker that cannot
// verify passkeys refuses to start when break-glass confirmations need
// one, rather than starting with every unseal impossible.
func TestBreakGlassPasskeyStepUpNeedsRelyingParty(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stepUp   string
		accounts int
		fails    bool
	}{
		{"passkey step-up, accounts", config.StepUpPasskey, 1, true},
		{"passkey step-up, no accounts", config.StepUpPasskey, 0, false},
		{"totp step-up", config.StepUpTOTP, 1, false},
		{"none", "", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{BreakGlass: make([]config.BreakGlassAccount, tc.accounts)}
			cfg.Identity.StepUp.BreakGlassConfirm = tc.stepUp
			if err := enablePasskeySigning(cfg, nil, nil, nil); (err != nil) != tc.fails {
				t.Fatalf("err %v, want failure %v", err, tc.fails)
			}
		})
	}
}
