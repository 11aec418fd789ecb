package pgproxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes the proxy answers with.
const (
	codeProtocolViolation     = "08P01" // malformed or oversized message
	codeConnectionFailure     = "08006" // upstream unreachable or login failed
	codeInvalidAuthSpec       = "28000" // no active grant, TLS required, replication
	codeInvalidPassword       = "28P01" // connection token refused
	codeInvalidCatalog        = "3D000" // database not allowed on the target
	codeAdminShutdown         = "57P01" // session ended by the broker (revoked, recording failed)
	codeCannotConnectNow      = "57P03" // broker shutting down, credentials unavailable
	codeIdleSessionTimeout    = "57P05" // role idle_timeout reached
	codeFeatureNotSupported   = "0A000" // protocol version
	codeInsufficientPrivilege = "42501" // COPY TO STDOUT refused by masking
)

// clientError is an error the client sees as a FATAL ErrorResponse before
// the connection closes. Msg is shown to the user and must never hold a
// token, password, query parameter or row data.
type clientError struct {
	Code string
	Msg  string
	// Detail is an optional second line for the user.
	Detail string
	// err is the underlying cause, for the broker's log only.
	err error
}

func (e *clientError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s (%s): %v", e.Msg, e.Code, e.err)
	}
	return e.Msg + " (" + e.Code + ")"
}

func (e *clientError) Unwrap() error { return e.err }

// fatalf returns a clientError with a formatted message.
func fatalf(code, format string, args ...any) *clientError {
	return &clientError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// asClientError returns the client-visible error in err's chain, if any.
func asClientError(err error) (*clientError, bool) {
	var ce *clientError
	ok := errors.As(err, &ce)
	return ce, ok
}

// appendFatal appends a FATAL ErrorResponse for e to buf.
func appendFatal(buf []byte, e *clientError) []byte {
	msg := &pgproto3.ErrorResponse{
		Severity:            "FATAL",
		SeverityUnlocalized: "FATAL",
		Code:                e.Code,
		Message:             e.Msg,
		Detail:              e.Detail,
	}
	out, err := msg.Encode(buf)
	if err != nil {
		// Encode fails only for messages over 1 GiB.
		return buf
	}
	return out
}
