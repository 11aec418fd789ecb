package uitest

import (
	"context"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/event"
)

// UnmaskSessions are the sessions UnmaskedSessions records.
type UnmaskSessions struct {
	// Unmasked is alice's session of demo-pg/monitor-unmask (approved
	// by bob) that returned public.subjects.subject_id in clear; Masked
	// is dave's session of the masked base role monitor.
	Unmasked, Masked string
	UnmaskGrant      broker.Grant
}

// UnmaskedSessions records, and audits as the PostgreSQL proxy does, an
// unmask session that returned a classified column in clear and a session
// of the masked base role.
func (e *Env) UnmaskedSessions(tb testing.TB) UnmaskSessions {
	tb.Helper()
	out := UnmaskSessions{Unmasked: "ses_pg_unmask", Masked: "ses_pg_masked"}
	out.UnmaskGrant = e.Grant(tb, "alice", "demo-pg", "monitor-unmask", "bob")
	masked := e.Grant(tb, "dave", "demo-pg", "monitor", "carol")
	cols := []map[string]string{{"classification": "subject_id", "column": "public.subjects.subject_id"}}
	e.pgSession(tb, out.UnmaskGrant, out.Unmasked, map[string]any{"masking": map[string]string{"subject_id": "pass"}, "unmasked": []string{"subject_id"}},
		[]event.Event{
			{Kind: event.KindNote, Op: "masking", Text: "masking in effect for role monitor-unmask: subject_id=pass unknown=mask"},
			{Kind: event.KindNote, Op: "unmask", Text: "unmask in effect for subject_id (role monitor-unmask, the unmasked variant of monitor, until " +
				out.UnmaskGrant.EndsAt.UTC().Format(time.RFC3339) + ")"},
			{Kind: event.KindPGQuery, Text: "SELECT subject_id, site FROM subjects LIMIT 1"},
			{Kind: event.KindNote, Op: "unmasked", Text: "returned in clear under the unmask grant: subject_id (public.subjects.subject_id)",
				Args: []string{"subject_id public.subjects.subject_id"}},
			{Kind: event.KindPGResult, Op: "rows", Args: []string{"25:subject_id", "25:site"}, N: 1, Bytes: 14,
				Text: "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"},
			{Kind: event.KindPGComplete, Text: "SELECT 1", N: 1},
		}, &audit.Entry{Actor: "alice", Action: broker.AuditUnmasked, Target: "demo-pg", Outcome: broker.OutcomeSuccess,
			Reason:  "classified columns returned in clear under the unmask grant: subject_id (public.subjects.subject_id)",
			Details: map[string]any{"protocol": "postgres", "session_id": out.Unmasked, "grant_id": out.UnmaskGrant.ID, "role": "monitor-unmask", "columns": cols}})
	e.pgSession(tb, masked, out.Masked, map[string]any{"masking": map[string]string{"subject_id": "mask"}},
		[]event.Event{
			{Kind: event.KindNote, Op: "masking", Text: "masking in effect for role monitor: subject_id=mask unknown=mask"},
			{Kind: event.KindPGQuery, Text: "SELECT subject_id FROM subjects LIMIT 1"},
			{Kind: event.KindPGComplete, Text: "SELECT 1", N: 1},
		}, nil)
	e.Drain(tb)
	return out
}

// pgSession audits session.start with details, records the events and,
// after the first query, the extra audit record.
func (e *Env) pgSession(tb testing.TB, g broker.Grant, id string, details map[string]any, evs []event.Event, extra *audit.Entry) {
	tb.Helper()
	ctx := context.Background()
	h := header(g, id, "postgres")
	h.Database = "clinical"
	w, err := e.Recorder.Start(ctx, h)
	if err != nil {
		tb.Fatal(err)
	}
	details["protocol"], details["session_id"], details["grant_id"] = "postgres", id, g.ID
	if _, err := e.Audit.Append(ctx, audit.Entry{Actor: g.User, Action: "session.start", Target: g.Target, Outcome: broker.OutcomeSuccess, Details: details}); err != nil {
		tb.Fatal(err)
	}
	for _, ev := range evs {
		if err := w.Record(ev); err != nil {
			tb.Fatal(err)
		}
		if ev.Kind == event.KindPGQuery && extra != nil {
			if _, err := e.Audit.Append(ctx, *extra); err != nil {
				tb.Fatal(err)
			}
			extra = nil
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}
