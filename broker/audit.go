package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// AuditRecord is one entry of the append-only, hash-chained audit log. Hash
// is the SHA-256 over the record's canonical encoding, which includes
// PrevHash, so altering or removing any record breaks every hash after it.
type AuditRecord struct {
	// Seq numbers records from 1 without gaps; the store assigns it.
	Seq     int64     `json:"seq"`
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target,omitempty"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	TraceID string    `json:"trace_id,omitempty"`
	// Details is a JSON object with action-specific fields. It never holds
	// a secret, a query parameter or row data.
	Details  json.RawMessage `json:"details,omitempty"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeError   = "error"
)

// AuditTimeFormat is the time encoding used in audit records and their hash:
// UTC, RFC 3339 with nanoseconds.
const AuditTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// ComputeHash returns the hex SHA-256 of the record's canonical encoding:
// every field but Hash, in a fixed order, with the time in AuditTimeFormat
// and Details compacted.
func (r AuditRecord) ComputeHash() string {
	details := json.RawMessage("null")
	if len(r.Details) > 0 {
		details = r.Details
	}
	canon := struct {
		Seq      int64           `json:"seq"`
		ID       string          `json:"id"`
		Time     string          `json:"time"`
		Actor    string          `json:"actor"`
		Action   string          `json:"action"`
		Target   string          `json:"target"`
		Outcome  string          `json:"outcome"`
		Reason   string          `json:"reason"`
		TraceID  string          `json:"trace_id"`
		Details  json.RawMessage `json:"details"`
		PrevHash string          `json:"prev_hash"`
	}{r.Seq, r.ID, r.Time.UTC().Format(AuditTimeFormat), r.Actor, r.Action, r.Target,
		r.Outcome, r.Reason, r.TraceID, details, r.PrevHash}
	b, err := json.Marshal(canon)
	if err != nil {
		// Details is the only field that can fail, and it is validated
		// JSON by the time a record is hashed.
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// AuditUnmasked is the audit action of a PostgreSQL session of an unmask
// grant returning classified columns in clear for the first time. Its
// details list them: columns, each with classification and column
// (schema.table.column), never a value.
const AuditUnmasked = "postgres.unmasked"
