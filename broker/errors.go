package broker

import (
	"errors"
	"fmt"
)

// Kind is the class of a refusal. The domain names what went wrong; each
// channel (the HTTP API, Slack, the CLI) decides how to show it.
type Kind string

// The kinds of refusal.
const (
	// KindNotFound: the thing asked for does not exist (or the caller may
	// not know that it does).
	KindNotFound Kind = "not_found"
	// KindForbidden: the caller is known but may not do or see this.
	KindForbidden Kind = "forbidden"
	// KindConflict: the request clashes with the current state (already
	// decided, not active, still live).
	KindConflict Kind = "conflict"
	// KindInvalid: what was asked for is malformed or breaks a rule of
	// the request itself (a missing reason, a duration over the maximum).
	KindInvalid Kind = "invalid"
	// KindUnavailable: a part the operation needs is not configured or
	// does not answer.
	KindUnavailable Kind = "unavailable"
	// KindUnauthenticated: a credential given for this step (a second
	// factor) is missing or wrong.
	KindUnauthenticated Kind = "unauthenticated"
	// KindRateLimited: too many attempts; try again later.
	KindRateLimited Kind = "rate_limited"
)

// Error is a refusal by a broker service: a kind, a stable
// machine-readable code (part of the API: clients match on it) and a
// message for people. Detail, when set, is the precise cause for the
// audit log where Message is deliberately vague (a failed second factor);
// it is never shown to the caller. No field ever holds a secret.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Detail  string
}

func (e *Error) Error() string { return e.Message }

// ErrorCode returns the machine-readable code.
func (e *Error) ErrorCode() string { return e.Code }

// Refuse returns an *Error of kind with code and a formatted message.
func Refuse(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if there is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// CodeOf returns the code of the *Error in err's chain, or "".
func CodeOf(err error) string {
	if e, ok := AsError(err); ok {
		return e.Code
	}
	return ""
}
