package pgproxy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/event"
)

// TestUnmaskShownColumnsRecorded: an unmask session's statements that
// return an unmasked classification in clear are noted in the timeline
// with the columns (never the values), in the simple and the extended
// protocol, and the first time each column is returned it is audited as
// postgres.unmasked. Statements returning no unmasked column, and every
// statement of the masked base role, are not.
func TestUnmaskShownColumnsRecorded(t *testing.T) {
	s := maskStack(t, "k1")
	out, err := s.runPsql(t, "alice", s.roleToken("alice", "monitor-unmask"), testTarget, "require",
		"SELECT dob, site FROM subjects LIMIT 1;\n"+
			"SELECT subject_id, dob FROM subjects ORDER BY dob LIMIT 1;\n"+
			"SELECT v.subject_id, s.subject_id AS again FROM visits v JOIN subjects s USING (subject_id) ORDER BY visit LIMIT 1;\n"+
			"SELECT subject_id FROM subjects WHERE false;\n", "-A")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "S-1001|1980-**-**") {
		t.Fatalf("unmask output:\n%s", out)
	}
	s.waitNoSessions(t)
	notes := s.rec.Last(t).Find(event.KindNote, "unmasked")
	if len(notes) != 2 {
		t.Fatalf("%d unmasked notes, want 2 (the two statements returning subject_id rows): %+v", len(notes), notes)
	}
	if got := strings.Join(notes[0].Args, ","); got != "subject_id public.subjects.subject_id" {
		t.Fatalf("first note args %q", got)
	}
	if got := strings.Join(notes[1].Args, ","); got != "subject_id public.visits.subject_id,subject_id public.subjects.subject_id" {
		t.Fatalf("second note args %q", got)
	}
	for _, n := range notes {
		noSubjectIDs(t, "an unmasked note", n.Text+strings.Join(n.Args, " "))
	}
	shown := s.audit.Find(broker.AuditUnmasked)
	if len(shown) != 2 {
		t.Fatalf("%d %s records, want one per newly shown statement: %+v", len(shown), broker.AuditUnmasked, shown)
	}
	if got := fmt.Sprint(shown[0].Details["columns"]); got != "[{subject_id public.subjects.subject_id}]" {
		t.Fatalf("first audit columns %s", got)
	}
	if got := fmt.Sprint(shown[1].Details["columns"]); got != "[{subject_id public.visits.subject_id}]" {
		t.Fatalf("second audit columns %s (only the column not audited before)", got)
	}
	if shown[0].Details["session_id"] == nil || shown[0].Details["grant_id"] == nil {
		t.Fatalf("audit lacks session and grant: %+v", shown[0].Details)
	}

	// The extended protocol: rows of an Execute are noted too.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := s.connect(t, "alice", s.roleToken("alice", "monitor-unmask"))
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		var sid string
		if err := conn.QueryRow(ctx, "SELECT subject_id FROM subjects WHERE site = $1 ORDER BY dob LIMIT 1", mode, "Leeds").Scan(&sid); err != nil || sid != "S-1001" {
			t.Fatalf("%v: %q %v", mode, sid, err)
		}
	}
	conn.Close(ctx)
	s.waitNoSessions(t)
	if notes := s.rec.Last(t).Find(event.KindNote, "unmasked"); len(notes) != 3 {
		t.Fatalf("extended protocol: %d unmasked notes, want 3: %+v", len(notes), notes)
	}
	if n := len(s.audit.Find(broker.AuditUnmasked)); n != 3 {
		t.Fatalf("%d %s records after the second session, want 3", n, broker.AuditUnmasked)
	}

	// The masked base role sees subject_id masked: nothing is noted.
	if _, err := s.runPsql(t, "alice", s.roleToken("alice", "monitor"), testTarget, "require",
		"SELECT subject_id, dob FROM subjects ORDER BY dob LIMIT 1;\n", "-A"); err != nil {
		t.Fatal(err)
	}
	s.waitNoSessions(t)
	if notes := s.rec.Last(t).Find(event.KindNote, "unmasked"); len(notes) != 0 {
		t.Fatalf("masked role has unmasked notes: %+v", notes)
	}
	if n := len(s.audit.Find(broker.AuditUnmasked)); n != 3 {
		t.Fatalf("masked session audited as unmasked: %d records", n)
	}
}
