package access

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a refusal with a machine-readable code. Status is the HTTP
// status the API answers with.
type Error struct {
	Code    string
	Message string
	Status  int
}

func (e *Error) Error() string { return e.Message }

func refuse(status int, code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Status: status}
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// statusForPolicyCode maps policy refusal codes to HTTP statuses: who you
// are → 403, the request's state → 409, what you asked → 422.
func statusForPolicyCode(code string) int {
	switch code {
	case "not_requester", "self_approval", "not_approver", "forbidden":
		return http.StatusForbidden
	case "already_decided", "duplicate_approval", "duplicate_denial", "request_expired", "not_pending", "grant_not_active":
		return http.StatusConflict
	default:
		return http.StatusUnprocessableEntity
	}
}
