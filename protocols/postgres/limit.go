package pgproxy

import (
	"fmt"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
)

// codeProgramLimit is the SQLSTATE of a message refused for a text longer
// than the recording holds (program_limit_exceeded).
const codeProgramLimit = "54000"

// statementLimit is a target's max_statement_bytes: its setting, or
// what a recording holds in one field when unset or larger.
func statementLimit(t *config.Target) int {
	n := t.Postgres.MaxStatementBytes
	if n <= 0 || n > event.MaxFieldLen {
		return event.MaxFieldLen
	}
	return n
}

// oversized checks every text e would record against limit. A longer one
// refuses the whole message: it is not forwarded, a note of the refusal
// (sizes only) is recorded instead, and the session ends with FATAL
// 54000. Nothing reaches the target that the recording does not hold
// whole. msg names the message (Query, Parse, Bind, FunctionCall); a
// limit of 0 is the recording's own.
func oversized(e *event.Event, msg string, limit int) (*event.Event, error) {
	if limit <= 0 || limit > event.MaxFieldLen {
		limit = event.MaxFieldLen
	}
	what, n := "", 0
	switch {
	case len(e.Text) > limit:
		what, n = textField(e.Kind), len(e.Text)
	case len(e.Name) > limit:
		what, n = "name", len(e.Name)
	default:
		for i, a := range e.Args {
			if len(a) > limit {
				what, n = fmt.Sprintf("parameter $%d as recorded", i+1), len(a)
				break
			}
		}
	}
	if what == "" {
		return nil, nil
	}
	note := &event.Event{Kind: event.KindNote, Op: "refused", Name: msg, N: int64(n), Denied: true,
		Text: fmt.Sprintf("%s message refused: its %s is %d bytes, over max_statement_bytes (%d); not sent to the target, session ended", msg, what, n, limit)}
	return note, &clientError{Code: codeProgramLimit,
		Msg:    fmt.Sprintf("custos: %s too long to record: %d bytes, over the limit of %d bytes (targets[].postgres.max_statement_bytes); it was not run and the session ends", what, n, limit),
		Detail: "Custos runs only what the session recording holds whole. Split the statement, or send large values in smaller pieces."}
}

// textField names what an event's Text holds.
func textField(k event.Kind) string {
	switch k {
	case event.KindPGBind:
		return "statement name"
	case event.KindPGCopy:
		return "COPY failure message"
	default:
		return "SQL text"
	}
}
