package identity

import (
	"errors"

	"github.com/custos-pam/custos/broker"
)

// Error codes. They are part of the API: clients match on them.
const (
	// CodeLoginFailed: wrong user, password or code. Deliberately says
	// no more than that.
	CodeLoginFailed = "login_failed"
	// CodeTooManyAttempts: too many failed sign-ins for the user or from
	// the address; try again later.
	CodeTooManyAttempts = "too_many_attempts"
	// CodeTokenInvalid: the token is unknown, revoked, malformed or of
	// another kind.
	CodeTokenInvalid = "token_invalid"
	// CodeTokenExpired: the token was valid but has expired.
	CodeTokenExpired = "token_expired"
	// CodeNotFound: no such token among those the caller may manage.
	CodeNotFound = "not_found"
	// CodeBadRequest: the call's arguments are invalid.
	CodeBadRequest = "bad_request"
)

// Error is an authentication or token refusal: the broker's one error
// type. Message is for the client; Detail is the precise cause for the
// audit log. Neither ever holds a password, code or token secret.
type Error = broker.Error

// refusal returns an *Error with the kind that goes with code.
func refusal(code, message, detail string) *Error {
	kind := broker.KindUnauthenticated
	switch code {
	case CodeTooManyAttempts:
		kind = broker.KindRateLimited
	case CodeNotFound:
		kind = broker.KindNotFound
	case CodeBadRequest:
		kind = broker.KindInvalid
	}
	return &Error{Kind: kind, Code: code, Message: message, Detail: detail}
}

// CodeOf returns the code of the *Error in err's chain, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// loginFailed is the one answer a client gets for every bad credential, so
// it cannot tell an unknown user from a wrong password or code.
func loginFailed(reason string) *Error {
	return refusal(CodeLoginFailed, "login failed: wrong user name, password or code", reason)
}
