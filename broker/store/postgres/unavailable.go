package postgres

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/broker"
)

// unavailable marks err with broker.ErrStoreUnavailable when it says the
// database could not be reached or the connection was lost (a restart, a
// failover, a network cut), so callers answer "try again" rather than an
// internal error. The transaction did not commit: PostgreSQL rolls back
// what a lost connection left open. Errors of the statements themselves
// and the callers' own errors pass unchanged.
func unavailable(err error) error {
	if err == nil || errors.Is(err, broker.ErrStoreUnavailable) || !lostConnection(err) {
		return err
	}
	return fmt.Errorf("%w: %w", broker.ErrStoreUnavailable, err)
}

// lostConnection reports whether err is a failure to connect or a
// connection that broke, as opposed to an error PostgreSQL answered.
func lostConnection(err error) bool {
	if _, ok := broker.AsError(err); ok {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down, crashed or is starting up.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
