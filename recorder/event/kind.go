// Package event is the recording event model: the session header and the
// typed, time-offset events a proxy records, with their compact binary
// encoding. The encoding is documented in docs/recording-format.md; Decode
// reads untrusted bytes and is fuzzed.
package event

import "fmt"

// Kind says what an event records. Values are part of the stored format:
// never renumber one.
type Kind uint8

// Event kinds. The fields each kind uses are listed in
// docs/recording-format.md and on Event.
const (
	// Terminal and stream data, per channel.
	KindOutput Kind = 1 // bytes the target sent (stdout)
	KindStderr Kind = 2 // extended data the target sent (stderr)
	KindInput  Kind = 3 // bytes the client sent
	KindResize Kind = 4 // window size: Cols, Rows

	// SSH.
	KindSSHChannel Kind = 10 // channel open: Op is the channel type, Text the destination
	KindSSHRequest Kind = 11 // channel or global request: Op is the request type

	// File transfers (SFTP, SCP).
	KindFile Kind = 20 // Op is the operation, Text the path

	// PostgreSQL.
	KindPGQuery    Kind = 30 // simple Query: Text is the SQL
	KindPGParse    Kind = 31 // Parse: Name is the statement, Text the SQL
	KindPGBind     Kind = 32 // Bind: Name is the portal, Text the statement, Args the parameters
	KindPGExecute  Kind = 33 // Execute: Name is the portal, N the row limit
	KindPGComplete Kind = 34 // CommandComplete: Text is the tag, N the rows
	KindPGRow      Kind = 35 // DataRow (only when results are recorded): Args are the values
	KindPGError    Kind = 36 // ErrorResponse: Op is the SQLSTATE, Name the severity, Text the message
	KindPGCopy     Kind = 37 // COPY: Op is in, out, both, done or fail; Text the format; N columns or bytes
	KindPGTx       Kind = 38 // transaction boundary: Op is begin, commit, rollback or failed
	// KindPGResult is the evidence of what a statement returned, without
	// the rows: Op is rows, copy_out or copy_in; Text the lowercase hex
	// SHA-256 of the returned DataRow bodies (or CopyData bodies) in order;
	// N the row count; Bytes the hashed byte count; Args the columns as
	// "oid:name" (rows only).
	KindPGResult Kind = 39

	// Lifecycle.
	KindStart Kind = 50 // recording started
	KindEnd   Kind = 51 // session ended: Op is closed, terminated or interrupted; Name who; Text why
	KindNote  Kind = 52 // broker annotation: Op is the topic, Text the message
)

// FlagStreamBreak is the Name of a KindNote that flags an SSH channel
// whose stream stopped parsing as the file-transfer protocol its observer
// followed (Op "scp" or "sftp"; N and Args give where). The channel is
// recorded in full from that byte on. The session index lists the flag,
// so a search for it finds such sessions.
const FlagStreamBreak = "stream_break"

var kindNames = map[Kind]string{
	KindOutput:     "output",
	KindStderr:     "stderr",
	KindInput:      "input",
	KindResize:     "resize",
	KindSSHChannel: "ssh_channel",
	KindSSHRequest: "ssh_request",
	KindFile:       "file",
	KindPGQuery:    "pg_query",
	KindPGParse:    "pg_parse",
	KindPGBind:     "pg_bind",
	KindPGExecute:  "pg_execute",
	KindPGComplete: "pg_complete",
	KindPGRow:      "pg_row",
	KindPGError:    "pg_error",
	KindPGCopy:     "pg_copy",
	KindPGTx:       "pg_tx",
	KindPGResult:   "pg_result",
	KindStart:      "start",
	KindEnd:        "end",
	KindNote:       "note",
}

// String returns the kind's stored name, or "kind_N" for a kind this
// version does not know.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind_%d", uint8(k))
}

// Terminal reports whether the kind carries terminal bytes in Data.
func (k Kind) Terminal() bool {
	return k == KindOutput || k == KindStderr || k == KindInput
}

// ParseKind returns the kind with the given stored name.
func ParseKind(s string) (Kind, bool) {
	for k, n := range kindNames {
		if n == s {
			return k, true
		}
	}
	return 0, false
}
