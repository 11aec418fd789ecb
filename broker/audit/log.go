package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/metrics"
)

// Entry is what a caller knows about an event; the store adds Seq, ID,
// Time and the hashes.
type Entry struct {
	Actor   string
	Action  string
	Target  string
	Outcome string
	Reason  string
	// Details is marshalled to a JSON object. It must never hold a
	// secret, a query parameter or row data.
	Details any
}

// Log appends records to the audit log in a store.
type Log struct {
	store   broker.Store
	metrics *metrics.Metrics
}

// CountAppends makes the log count its appends in m. Call it before the
// log is used.
func (l *Log) CountAppends(m *metrics.Metrics) { l.metrics = m }

// NewLog returns a Log writing to s.
func NewLog(s broker.Store) *Log { return &Log{store: s} }

// Append appends one record in a transaction of its own.
func (l *Log) Append(ctx context.Context, e Entry) (broker.AuditRecord, error) {
	var rec broker.AuditRecord
	err := l.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		rec, err = l.AppendTx(ctx, tx, e)
		return err
	})
	if err != nil {
		return broker.AuditRecord{}, err
	}
	return rec, nil
}

// AppendTx appends one record inside tx, so it commits or rolls back with
// the change it describes. The trace ID comes from ctx (see WithTraceID);
// without one the record gets a fresh ID.
func (l *Log) AppendTx(ctx context.Context, tx broker.Tx, e Entry) (broker.AuditRecord, error) {
	rec, err := e.record(ctx)
	if err != nil {
		return broker.AuditRecord{}, fmt.Errorf("audit %s: %w", e.Action, err)
	}
	rec, err = tx.AppendAudit(rec)
	if err != nil {
		return broker.AuditRecord{}, fmt.Errorf("audit %s: %w", e.Action, err)
	}
	l.metrics.AuditAppended(e.Outcome)
	return rec, nil
}

func (e Entry) record(ctx context.Context) (broker.AuditRecord, error) {
	if e.Actor == "" || e.Action == "" || e.Outcome == "" {
		return broker.AuditRecord{}, errors.New("actor, action and outcome are required")
	}
	rec := broker.AuditRecord{
		Actor: e.Actor, Action: e.Action, Target: e.Target, Outcome: e.Outcome, Reason: e.Reason,
		TraceID: TraceID(ctx),
	}
	if rec.TraceID == "" {
		rec.TraceID = NewTraceID()
	}
	if e.Details != nil {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return rec, fmt.Errorf("details: %w", err)
		}
		if len(b) == 0 || (b[0] != '{' && string(b) != "null") {
			return rec, errors.New("details must be a JSON object")
		}
		rec.Details = b
	}
	return rec, nil
}

type traceKey struct{}

// WithTraceID returns a context carrying a trace ID that every audit
// record appended with it shares, so one operation's records can be found
// together.
func WithTraceID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceKey{}, id)
}

// TraceID returns the trace ID carried by ctx, or "".
func TraceID(ctx context.Context) string {
	id, _ := ctx.Value(traceKey{}).(string)
	return id
}

// NewTraceID returns a fresh random trace ID.
func NewTraceID() string { return broker.NewID("trc") }

type sourceKey struct{}

// WithSource returns a context carrying the client address (without port)
// of the request being served, so code that audits a refusal deep in a
// call can name where it came from.
func WithSource(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, sourceKey{}, addr)
}

// Source returns the client address carried by ctx, or "".
func Source(ctx context.Context) string {
	a, _ := ctx.Value(sourceKey{}).(string)
	return a
}
