package event

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Header describes a recorded session. It is written once, when recording
// starts, and every chunk of the session is chained to its hash.
type Header struct {
	// Version is the recording format version; Start fills it in.
	Version    int    `json:"version"`
	SessionID  string `json:"session_id"`
	GrantID    string `json:"grant_id"`
	User       string `json:"user"`
	Target     string `json:"target"`
	Role       string `json:"role"`
	Protocol   string `json:"protocol"`
	ClientAddr string `json:"client_addr,omitempty"`
	// Account is the upstream account the broker used: the SSH login or
	// the database user. Default: empty.
	Account string `json:"account,omitempty"`
	// Database is the PostgreSQL database. Default: empty.
	Database string `json:"database,omitempty"`
	// StartedAt is the wall-clock start; event offsets count from it.
	// Start fills it in when zero.
	StartedAt time.Time `json:"started_at"`
	// Policy is the snapshot of the policy the session ran under.
	Policy Policy `json:"policy"`
}

// Policy is the snapshot of the grant and recording policy a session ran
// under, kept with the recording as evidence.
type Policy struct {
	// Approvers are the users who approved the grant.
	Approvers []string `json:"approvers,omitempty"`
	// Reason and Ticket are the grant's justification.
	Reason string `json:"reason,omitempty"`
	Ticket string `json:"ticket,omitempty"`
	// GrantEndsAt is when the grant ends.
	GrantEndsAt time.Time `json:"grant_ends_at,omitzero"`
	// Retention is how long the recording is kept under Object Lock.
	// Default: 0, the recorder's configured retention.
	Retention time.Duration `json:"retention_ns,omitempty"`
	// LegalHold puts the recording under legal hold. Default: false, the
	// recorder's setting applies.
	LegalHold bool `json:"legal_hold,omitempty"`
	// FailOpen lets the session continue when recording fails. Default:
	// false (fail closed). Every use is audited.
	FailOpen bool `json:"fail_open,omitempty"`
	// Parameters is the bind-parameter redaction policy the proxy applied:
	// "record", "hash" or "omit". Default: empty (not a PostgreSQL session).
	Parameters string `json:"parameters,omitempty"`
	// RecordResults says whether result rows are recorded. Default: false.
	RecordResults bool `json:"record_results,omitempty"`
	// IndexSQL is what of a statement's text the unencrypted session index
	// keeps: IndexSQLNormalized, IndexSQLFull or IndexSQLNone. Default:
	// empty, which means IndexSQLNormalized.
	IndexSQL string `json:"index_sql,omitempty"`
	// FileContents is how the contents of files moved by scp and SFTP
	// were recorded: FileContentsFull or FileContentsDigest. Default:
	// empty (not an SSH session), read as full.
	FileContents string `json:"file_contents,omitempty"`
}

// File-contents policies of SSH sessions (Policy.FileContents).
const (
	// FileContentsFull records every byte of scp and SFTP channels, with
	// file events on top.
	FileContentsFull = "full"
	// FileContentsDigest leaves the contents of correctly framed files
	// out of the record and puts their size and SHA-256 in the file
	// events.
	FileContentsDigest = "digest"
)

// Session index policies for SQL text (Policy.IndexSQL).
const (
	// IndexSQLNormalized indexes statements with their literals replaced
	// by placeholders and comments removed; the literals stay only in the
	// encrypted recording.
	IndexSQLNormalized = "normalized"
	// IndexSQLFull indexes statements as sent, literals included.
	IndexSQLFull = "full"
	// IndexSQLNone keeps statements out of the index.
	IndexSQLNone = "none"
)

// FormatVersion is the recording format version this package writes:
// 2 since chunks may be compressed (chunk frame version 2). Readers accept
// versions 1 and 2.
const FormatVersion = 2

// MaxSessionIDLen bounds session identifiers; they are used in object keys.
const MaxSessionIDLen = 128

// Validate checks the fields every recording needs.
func (h *Header) Validate() error {
	if err := ValidSessionID(h.SessionID); err != nil {
		return err
	}
	if h.Protocol == "" {
		return errors.New("header: protocol is required")
	}
	if h.User == "" || h.Target == "" {
		return errors.New("header: user and target are required")
	}
	return nil
}

// ValidSessionID checks that id is usable in an object key and a file name:
// 1 to MaxSessionIDLen characters from [A-Za-z0-9_.-], not starting with a
// dot.
func ValidSessionID(id string) error {
	if id == "" || len(id) > MaxSessionIDLen || id[0] == '.' {
		return fmt.Errorf("invalid session id %q", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("invalid session id %q", id)
		}
	}
	return nil
}

// Encode returns the header's canonical JSON encoding. The recording keeps
// these exact bytes and hashes them; see Hash.
func (h *Header) Encode() ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("header: encode: %w", err)
	}
	return b, nil
}

// HashHeader returns the SHA-256 of encoded header bytes: the root of the
// session's chunk chain.
func HashHeader(encoded []byte) [32]byte { return sha256.Sum256(encoded) }
