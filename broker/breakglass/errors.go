package breakglass

import "github.com/custos-pam/custos/broker"

// Error is a refusal with a machine-readable code: the broker's one error
// type.
type Error = broker.Error

// refuse returns a refusal of a kind; the web package decides the status.
func refuse(kind broker.Kind, code, format string, args ...any) *Error {
	return broker.Refuse(kind, code, format, args...)
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) { return broker.AsError(err) }

func notFound(format string, args ...any) *Error {
	return refuse(broker.KindNotFound, "not_found", format, args...)
}

func forbidden(code, format string, args ...any) *Error {
	return refuse(broker.KindForbidden, code, format, args...)
}

func conflict(code, format string, args ...any) *Error {
	return refuse(broker.KindConflict, code, format, args...)
}
