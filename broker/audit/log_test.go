package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAppend(t *testing.T) {
	s := openStore(t)
	log := audit.NewLog(s)
	ctx := audit.WithTraceID(t.Context(), "trc_req42")
	rec, err := log.Append(ctx, audit.Entry{Actor: "alice", Action: "request.create", Target: "db1",
		Outcome: broker.OutcomeSuccess, Reason: "INC-1", Details: map[string]any{"role": "ro", "minutes": 60}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1 || rec.TraceID != "trc_req42" || rec.Actor != "alice" || rec.Reason != "INC-1" ||
		string(rec.Details) != `{"minutes":60,"role":"ro"}` || rec.Hash != rec.ComputeHash() {
		t.Errorf("record = %+v", rec)
	}

	// Without a trace ID in the context, each record gets a fresh one.
	r2, err := log.Append(t.Context(), audit.Entry{Actor: "bob", Action: "x", Outcome: "success"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r2.TraceID, "trc_") || r2.TraceID == rec.TraceID || r2.Details != nil {
		t.Errorf("second record = %+v", r2)
	}
	rep, err := audit.Verify(t.Context(), s)
	if err != nil || !rep.OK || rep.Records != 2 || rep.Head != r2.Hash {
		t.Errorf("Verify = %+v, %v", rep, err)
	}
}

func TestAppendRefusesBadEntries(t *testing.T) {
	log := audit.NewLog(openStore(t))
	for name, e := range map[string]audit.Entry{
		"no actor":       {Action: "x", Outcome: "success"},
		"no action":      {Actor: "a", Outcome: "success"},
		"no outcome":     {Actor: "a", Action: "x"},
		"details array":  {Actor: "a", Action: "x", Outcome: "success", Details: []int{1}},
		"details string": {Actor: "a", Action: "x", Outcome: "success", Details: "text"},
		"unmarshallable": {Actor: "a", Action: "x", Outcome: "success", Details: map[string]any{"f": func() {}}},
		"raw not object": {Actor: "a", Action: "x", Outcome: "success", Details: json.RawMessage(`[1]`)},
		"raw not json":   {Actor: "a", Action: "x", Outcome: "success", Details: json.RawMessage(`{x`)},
	} {
		if _, err := log.Append(t.Context(), e); err == nil {
			t.Errorf("%s: Append succeeded", name)
		}
	}
}

func TestAppendTxRollsBackWithTheChange(t *testing.T) {
	s := openStore(t)
	log := audit.NewLog(s)
	boom := errors.New("boom")
	err := s.Update(t.Context(), func(tx broker.Tx) error {
		if _, err := log.AppendTx(t.Context(), tx, audit.Entry{Actor: "a", Action: "x", Outcome: "success"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), s)
	if err != nil || rep.Records != 0 {
		t.Errorf("Verify = %+v, %v; want an empty log", rep, err)
	}
}

// Verify reads in pages; a chain longer than one page must be walked to
// its end and a break on a later page found.
func TestVerifyPages(t *testing.T) {
	s := openStore(t)
	const n = 2345
	err := s.Update(t.Context(), func(tx broker.Tx) error {
		for range n {
			if _, err := tx.AppendAudit(broker.AuditRecord{Actor: "a", Action: "x", Outcome: "success"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), s)
	if err != nil || !rep.OK || rep.Records != n {
		t.Fatalf("Verify = %+v, %v; want %d records", rep, err, n)
	}
	rep, err = audit.Verify(t.Context(), flaky{s, 2001})
	if err != nil || rep.OK || rep.FirstBad != 2001 {
		t.Fatalf("Verify with record 2001 altered = %+v, %v", rep, err)
	}
}

// flaky alters one record as it is read.
type flaky struct {
	broker.Store
	seq int64
}

func (f flaky) View(ctx context.Context, fn func(broker.Tx) error) error {
	return f.Store.View(ctx, func(tx broker.Tx) error { return fn(flakyTx{tx, f.seq}) })
}

type flakyTx struct {
	broker.Tx
	seq int64
}

func (f flakyTx) ListAudit(af broker.AuditFilter) ([]broker.AuditRecord, error) {
	recs, err := f.Tx.ListAudit(af)
	for i := range recs {
		if recs[i].Seq == f.seq {
			recs[i].Reason = "changed"
		}
	}
	return recs, err
}

func TestTraceID(t *testing.T) {
	if got := audit.TraceID(context.Background()); got != "" {
		t.Errorf("TraceID of a bare context = %q", got)
	}
	if got := audit.TraceID(audit.WithTraceID(context.Background(), "trc_1")); got != "trc_1" {
		t.Errorf("TraceID = %q", got)
	}
}
