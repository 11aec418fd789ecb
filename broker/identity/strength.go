package identity

import (
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Authentication methods, as tokens record them in AuthMethod.
const (
	MethodPassword     = "password"
	MethodPasswordTOTP = "password+totp"
	MethodSSO          = "sso"
	// MethodSSOMFA is a provider sign-in whose ID token's amr claim names
	// a second factor (mfa, otp, hwk, swk, sms, fpt, face, pin).
	MethodSSOMFA = "sso+mfa"
)

// Proof is how and when a token's holder authenticated.
type Proof struct {
	Method string
	Time   time.Time
}

// Strength ranks an authentication method: 0 unknown, 1 one factor
// (password, sso), 2 two factors (password+totp, sso+mfa).
func Strength(method string) int {
	switch method {
	case MethodPassword, MethodSSO:
		return 1
	case MethodPasswordTOTP, MethodSSOMFA:
		return 2
	}
	return 0
}

// Requirement is what a sensitive action asks of the caller's token.
type Requirement struct {
	// MinStrength is the least Strength of the token's method. 0: any.
	MinStrength int
	// MaxAge is how long ago the authentication may have been. 0: any.
	MaxAge time.Duration
}

// CodeStepUp: the token's authentication is too weak or too old for the
// action; sign in again (with a second factor).
const CodeStepUp = "step_up_required"

// CheckAuth reports whether tok satisfies req at now; a refusal is an
// *Error with CodeStepUp saying what is missing.
func CheckAuth(tok broker.Token, req Requirement, now time.Time) error {
	if s := Strength(tok.AuthMethod); s < req.MinStrength {
		method := tok.AuthMethod
		if method == "" {
			method = "unknown"
		}
		return &Error{Kind: broker.KindForbidden, Code: CodeStepUp,
			Message: "this action needs a stronger sign-in (a second factor): sign in again",
			Detail:  fmt.Sprintf("token %s: method %s has strength %d, %d required", tok.ID, method, s, req.MinStrength)}
	}
	if req.MaxAge > 0 && (tok.AuthTime.IsZero() || now.Sub(tok.AuthTime) > req.MaxAge) {
		return &Error{Kind: broker.KindForbidden, Code: CodeStepUp,
			Message: fmt.Sprintf("this action needs a sign-in within the last %s: sign in again", req.MaxAge),
			Detail:  fmt.Sprintf("token %s: authenticated at %s, more than %s ago", tok.ID, tok.AuthTime.UTC().Format(time.RFC3339), req.MaxAge)}
	}
	return nil
}
