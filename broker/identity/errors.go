package identity

import "errors"

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

// Error is an authentication or token refusal. Message is for the client;
// Reason is the precise cause for the audit log. Neither ever holds a
// password, code or token secret.
type Error struct {
	Code    string
	Message string
	Reason  string
}

func (e *Error) Error() string { return e.Message }

// ErrorCode returns the machine-readable code.
func (e *Error) ErrorCode() string { return e.Code }

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
	return &Error{Code: CodeLoginFailed, Message: "login failed: wrong user name, password or code", Reason: reason}
}
