package sqlstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

const auditCols = "seq, id, time, actor, action, target, outcome, reason, trace_id, details, prev_hash, hash"

// AppendAudit chains rec to the last record and inserts it: Seq is the
// last Seq plus one, PrevHash the last Hash (audit.GenesisHash for the
// first record), ID and Time are filled in when empty, Details is stored
// compacted, and Hash is rec.ComputeHash() over exactly the values stored.
func (t *Tx) AppendAudit(rec broker.AuditRecord) (broker.AuditRecord, error) {
	if err := t.writable("append audit"); err != nil {
		return rec, err
	}
	// The canonical encoding replaces invalid UTF-8, so two different
	// byte strings could hash alike; refuse them instead.
	for _, f := range []string{rec.ID, rec.Actor, rec.Action, rec.Target, rec.Outcome, rec.Reason, rec.TraceID} {
		if !utf8.ValidString(f) {
			return rec, t.errorf("append audit: field is not valid UTF-8")
		}
	}
	details, err := compactDetails(rec.Details)
	if err != nil {
		return rec, t.errorf("append audit: %w", err)
	}
	rec.Details = details
	if rec.ID == "" {
		rec.ID = broker.NewID("aud")
	}
	if rec.Time.IsZero() {
		rec.Time = nowUTC()
	}
	rec.Time = utc(rec.Time)
	if y := rec.Time.Year(); y < 1 || y > 9999 {
		return rec, t.errorf("append audit: time %d is out of range", y)
	}

	var last int64
	prev := audit.GenesisHash
	err = t.getOne("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", nil, &last, &prev)
	if err != nil && !isNotFound(err) {
		return rec, t.errorf("append audit: read chain head: %w", err)
	}
	rec.Seq, rec.PrevHash = last+1, prev
	rec.Hash = rec.ComputeHash()

	_, err = t.c.Exec(t.ctx, "INSERT INTO audit ("+auditCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		rec.Seq, rec.ID, fmtTime(rec.Time), rec.Actor, rec.Action, rec.Target, rec.Outcome, rec.Reason,
		rec.TraceID, string(rec.Details), rec.PrevHash, rec.Hash)
	if err != nil {
		return rec, t.errorf("append audit seq %d: %w", rec.Seq, err)
	}
	return rec, nil
}

// compactDetails validates Details and returns it compacted; empty and
// JSON null both become nil, which hashes as null.
func compactDetails(d json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(d)) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	if !utf8.Valid(d) {
		return nil, fmt.Errorf("details are not valid UTF-8")
	}
	if err := json.Compact(&buf, d); err != nil {
		return nil, fmt.Errorf("details are not valid JSON: %w", err)
	}
	if buf.String() == "null" {
		return nil, nil
	}
	return buf.Bytes(), nil
}

// ListAudit returns the records f selects in Seq order.
func (t *Tx) ListAudit(f broker.AuditFilter) ([]broker.AuditRecord, error) {
	var w filter
	w.seqAfter("seq", f.AfterSeq)
	w.eq("actor", f.Actor)
	w.eq("target", f.Target)
	w.prefix("action", f.ActionPrefix)
	w.time("time", ">=", f.Since)
	w.time("time", "<", f.Until)
	q := "SELECT " + auditCols + " FROM audit" + w.where() + " ORDER BY seq" + w.limit(f.Limit)
	var out []broker.AuditRecord
	err := t.each(q, w.args, func(r Rows) error {
		var rec broker.AuditRecord
		var ts, details string
		if err := r.Scan(&rec.Seq, &rec.ID, &ts, &rec.Actor, &rec.Action, &rec.Target, &rec.Outcome,
			&rec.Reason, &rec.TraceID, &details, &rec.PrevHash, &rec.Hash); err != nil {
			return err
		}
		// An unparsable time (only possible if the row was edited by
		// hand) reads as the zero time, so the record's hash no longer
		// matches and audit verification names it.
		rec.Time, _ = parseTime(ts)
		if details != "" {
			rec.Details = json.RawMessage(details)
		}
		out = append(out, rec)
		return nil
	})
	if err != nil {
		return nil, t.errorf("list audit: %w", err)
	}
	return out, nil
}

// ImportAudit inserts a record restored from a backup exactly as it was
// stored: same Seq, ID, Time, PrevHash and Hash. It refuses a record that
// does not continue the chain in the store (Seq the last plus one,
// PrevHash the last Hash) or whose Hash is not its ComputeHash, so a
// restore can only rebuild an intact chain, never graft or edit one.
func (t *Tx) ImportAudit(rec broker.AuditRecord) error {
	if err := t.writable("import audit"); err != nil {
		return err
	}
	details, err := compactDetails(rec.Details)
	if err != nil {
		return t.errorf("import audit seq %d: %w", rec.Seq, err)
	}
	rec.Details = details
	rec.Time = utc(rec.Time)
	var last int64
	prev := audit.GenesisHash
	err = t.getOne("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", nil, &last, &prev)
	if err != nil && !isNotFound(err) {
		return t.errorf("import audit: read chain head: %w", err)
	}
	switch {
	case rec.Seq != last+1:
		return t.errorf("import audit: record %d does not follow record %d", rec.Seq, last)
	case rec.PrevHash != prev:
		return t.errorf("import audit: record %d does not chain to the record before it", rec.Seq)
	case rec.Hash != rec.ComputeHash():
		return t.errorf("import audit: record %d does not match its hash", rec.Seq)
	}
	_, err = t.c.Exec(t.ctx, "INSERT INTO audit ("+auditCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		rec.Seq, rec.ID, fmtTime(rec.Time), rec.Actor, rec.Action, rec.Target, rec.Outcome, rec.Reason,
		rec.TraceID, string(rec.Details), rec.PrevHash, rec.Hash)
	if err != nil {
		return t.errorf("import audit seq %d: %w", rec.Seq, err)
	}
	return nil
}
