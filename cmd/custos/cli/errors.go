package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Exit codes, documented in docs/cli.md. A script tells a refusal from a
// missing thing or a broker that is down without parsing messages.
const (
	exitOK          = 0
	exitFailure     = 1 // anything else
	exitUsage       = 2 // bad flags, arguments or input the broker found invalid
	exitRefused     = 3 // refused: forbidden, unauthenticated, conflicting
	exitNotFound    = 4
	exitUnavailable = 5 // the broker or a part it needs is unreachable, or rate limited
	exitTampered    = 6 // verify found a recording or the audit log altered
)

// exitNames are the error codes of -o json errors the CLI makes itself,
// per exit code.
var exitNames = map[int]string{exitFailure: "error", exitUsage: "usage", exitRefused: "refused",
	exitNotFound: "not_found", exitUnavailable: "unavailable", exitTampered: "tampered"}

// exitError ends the program with a specific code; msg, when set, is
// printed like any error.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError marks a command line the CLI cannot run as given.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErr(err error) error { return &usageError{err} }

// unreachableError is a broker that did not answer.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return "broker unreachable: " + e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// unauthenticatedError is a missing or expired saved token.
type unauthenticatedError struct{ msg string }

func (e *unauthenticatedError) Error() string { return e.msg }

// exitCodeOf maps err to its exit code and the machine-readable code of
// its -o json form: the broker's own error code when it answered one.
func exitCodeOf(err error) (int, string) {
	var (
		ee *exitError
		ue *usageError
		ae *apiError
		re *unreachableError
		ne *unauthenticatedError
	)
	switch {
	case errors.As(err, &ee):
		return ee.code, exitNames[ee.code]
	case errors.As(err, &ue):
		return exitUsage, "usage"
	case errors.As(err, &ae):
		code := ae.Code
		if code == "" {
			code = fmt.Sprintf("http_%d", ae.Status)
		}
		return statusExit(ae.Status), code
	case errors.As(err, &re):
		return exitUnavailable, "unavailable"
	case errors.As(err, &ne):
		return exitRefused, "unauthenticated"
	}
	// Cobra's own complaints about the command line.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "invalid argument",
		"flag needs an argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, ": "+p) {
			return exitUsage, "usage"
		}
	}
	return exitFailure, "error"
}

// statusExit maps an HTTP status of the broker's API to an exit code;
// web.StatusOf is the one place a refusal's kind becomes a status.
func statusExit(status int) int {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity: // invalid
		return exitUsage
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict: // unauthenticated, forbidden, conflict
		return exitRefused
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return exitUnavailable
	}
	return exitFailure
}

// reportError prints err as one line, or with -o json as
// {"error":{"code","message","exit"}} on stderr, and returns its exit code.
func reportError(w io.Writer, output string, err error) int {
	code, name := exitCodeOf(err)
	msg := err.Error()
	if msg == "" {
		return code // the error was already shown (a child's exit status)
	}
	if output == "json" {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": name, "message": msg, "exit": code}})
		fmt.Fprintln(w, string(b))
		return code
	}
	fmt.Fprintln(w, "custos: "+msg)
	return code
}
