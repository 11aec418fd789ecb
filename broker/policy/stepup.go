package policy

import (
	"fmt"

	"github.com/custos-pam/custos/broker/config"
)

// CodeStepUpRequired: the action needs a fresh re-authentication bound to
// it (a passkey assertion or a TOTP code) and none that satisfies the
// policy came with it.
const CodeStepUpRequired = "step_up_required"

// Step-up methods, as a verified step-up proof names them.
const (
	StepUpMethodPasskey = "passkey"
	StepUpMethodTOTP    = "totp"
)

// StepUpSatisfied reports whether a step-up verified with method meets
// required (config.StepUpPasskey, StepUpTOTP, StepUpAny or empty). A
// passkey meets every requirement; a TOTP code meets totp and any, never
// passkey; no step-up (method "") meets only no requirement.
func StepUpSatisfied(required, method string) bool {
	switch required {
	case "":
		return true
	case config.StepUpPasskey:
		return method == StepUpMethodPasskey
	case config.StepUpTOTP, config.StepUpAny:
		return method == StepUpMethodPasskey || method == StepUpMethodTOTP
	}
	return false // an unknown requirement is never met
}

// CheckStepUp returns a CodeStepUpRequired refusal when method does not
// meet required for action.
func CheckStepUp(required, method, action string) error {
	if StepUpSatisfied(required, method) {
		return nil
	}
	want := "a passkey or a TOTP code bound to it"
	if required == config.StepUpPasskey {
		want = "a passkey bound to it (a TOTP code is not enough)"
	}
	got := "none was given"
	if method != "" {
		got = "a " + method + " confirmation was given"
	}
	return &Error{Code: CodeStepUpRequired,
		Message: fmt.Sprintf("%s needs a fresh confirmation with %s; %s.", action, want, got)}
}
