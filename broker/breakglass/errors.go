package breakglass

import (
	"net/http"

	"github.com/custos-pam/custos/broker"
)

// Error is a refusal with a machine-readable code: the broker's one error
// type.
type Error = broker.Error

// refuse returns a refusal. status names the class of refusal as the
// HTTP status it resembles; it is turned into a broker.Kind here and the
// web package decides the real status from the kind.
func refuse(status int, code, format string, args ...any) *Error {
	return broker.Refuse(kindOf(status), code, format, args...)
}

func kindOf(status int) broker.Kind {
	switch status {
	case http.StatusNotFound:
		return broker.KindNotFound
	case http.StatusForbidden:
		return broker.KindForbidden
	case http.StatusConflict:
		return broker.KindConflict
	case http.StatusUnauthorized:
		return broker.KindUnauthenticated
	case http.StatusTooManyRequests:
		return broker.KindRateLimited
	case http.StatusServiceUnavailable:
		return broker.KindUnavailable
	default:
		return broker.KindInvalid
	}
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) { return broker.AsError(err) }

func notFound(format string, args ...any) *Error {
	return refuse(http.StatusNotFound, "not_found", format, args...)
}

func forbidden(code, format string, args ...any) *Error {
	return refuse(http.StatusForbidden, code, format, args...)
}

func conflict(code, format string, args ...any) *Error {
	return refuse(http.StatusConflict, code, format, args...)
}
