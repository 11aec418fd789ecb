package breakglass

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a refusal with a machine-readable code; Status is the HTTP
// status the API answers with.
type Error struct {
	Code    string
	Message string
	Status  int
	// reason is the precise cause for the audit log when Message is
	// deliberately vague (a failed second factor).
	reason string
}

func (e *Error) Error() string { return e.Message }

// ErrorCode implements the web package's coder.
func (e *Error) ErrorCode() string { return e.Code }

func refuse(status int, code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Status: status}
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func notFound(format string, args ...any) *Error {
	return refuse(http.StatusNotFound, "not_found", format, args...)
}

func forbidden(code, format string, args ...any) *Error {
	return refuse(http.StatusForbidden, code, format, args...)
}

func conflict(code, format string, args ...any) *Error {
	return refuse(http.StatusConflict, code, format, args...)
}
