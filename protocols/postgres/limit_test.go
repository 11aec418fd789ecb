package pgproxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// patients creates a three-row table the session's role owns.
func (s *stack) patients(t *testing.T) {
	t.Helper()
	super(t, s.pg, s.db, "CREATE TABLE patients (id int, note text); INSERT INTO patients SELECT g, 'n' FROM generate_series(1, 3) g; "+
		"ALTER TABLE patients OWNER TO "+s.role)
}

// patientCount counts the rows as the superuser, bypassing the proxy.
func (s *stack) patientCount(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.pg.DSN(s.db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// recorded opens the stored recording of the stack's only session.
func recorded(t *testing.T, s *stack, rec *recorder.Recorder) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.waitNoSessions(t)
	if err := rec.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	opened, err := rec.Open(ctx, s.creds.calls[0], recorder.Access{Actor: "sec", Purpose: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for e, err := range opened.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// wantRefusedNote checks the recording: no event holds the refused text
// or is cut, nothing was bound or executed, and a note records the
// refusal.
func wantRefusedNote(t *testing.T, evs []event.Event, msg string) {
	t.Helper()
	notes := 0
	for _, e := range evs {
		if e.Truncated {
			t.Errorf("a %s event was cut: the recording does not hold what was sent", e.Kind)
		}
		if strings.Contains(e.Text, "xxxxxxxx") || strings.Contains(strings.Join(e.Args, ""), "xxxxxxxx") ||
			e.Kind == event.KindPGBind || e.Kind == event.KindPGExecute {
			t.Errorf("the refused message is recorded as a %s event", e.Kind)
		}
		if e.Kind == event.KindNote && e.Op == "refused" && e.Name == msg && e.Denied {
			notes++
		}
	}
	if notes != 1 {
		t.Errorf("%d refusal notes for %s, want 1:\n%s", notes, msg, dump(evs))
	}
	if end := evs[len(evs)-1]; end.Kind != event.KindEnd || end.Op != "terminated" || !strings.Contains(end.Text, "max_statement_bytes") {
		t.Errorf("end event = %+v", end)
	}
}

// filler is a comment of n bytes.
func filler(n int) string { return "/* " + strings.Repeat("x", n-6) + " */" }

// TestOversizedQueryNeverReachesTarget is the attacker's test: a DELETE
// hidden behind 1 MiB of comment, sent by psql as one Query. Recorded
// whole it would be cut to filler; it must not run at all.
func TestOversizedQueryNeverReachesTarget(t *testing.T) {
	rec := realRecorder(t)
	s := newStack(t, withRecorder(rec))
	s.patients(t)
	tok, _ := s.token("alice")

	script := filler(event.MaxFieldLen) + " DELETE FROM patients;\n"
	out, _ := s.runPsql(t, "alice", tok, testTarget, "require", script)
	if !strings.Contains(out, "54000") && !strings.Contains(out, "too long to record") {
		t.Errorf("psql output lacks the refusal:\n%.2000s", out)
	}
	if !strings.Contains(out, "max_statement_bytes") || strings.Contains(out, "xxxxxxxx") || strings.Contains(out, "DELETE 3") {
		t.Errorf("psql output:\n%.2000s", out)
	}
	if n := s.patientCount(t); n != 3 {
		t.Fatalf("patients has %d rows: the hidden DELETE ran", n)
	}
	wantRefusedNote(t, recorded(t, s, rec), "Query")
}

// TestStatementAtTheLimitRecordedWhole: up to the limit a statement runs
// and is recorded complete, not cut.
func TestStatementAtTheLimitRecordedWhole(t *testing.T) {
	rec := realRecorder(t)
	s := newStack(t, withRecorder(rec))
	s.patients(t)
	tok, _ := s.token("alice")
	sql := " DELETE FROM patients WHERE id = 1"
	sql = filler(event.MaxFieldLen-len(sql)) + sql
	conn := s.connect(t, "alice", tok)
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	if n := s.patientCount(t); n != 2 {
		t.Fatalf("patients has %d rows, want 2", n)
	}
	found := false
	for _, e := range recorded(t, s, rec) {
		if e.Kind == event.KindPGQuery && e.Text == sql && !e.Truncated {
			found = true
		}
	}
	if !found {
		t.Fatal("the statement at the limit is not recorded whole")
	}
}

// wantLimitError checks what a pgx client sees.
func wantLimitError(t *testing.T, err error) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v, want FATAL 54000", err)
	}
	if pe.Severity != "FATAL" || pe.Code != "54000" || !strings.Contains(pe.Message, "max_statement_bytes") || strings.Contains(pe.Message, "xxxx") {
		t.Fatalf("got %s %s %q", pe.Severity, pe.Code, pe.Message)
	}
}

// TestOversizedParseAndBindRefused: the extended protocol is held to the
// same limit: the SQL of a Parse, and each parameter value as recorded
// under the record policy. A lowered max_statement_bytes applies.
func TestOversizedParseAndBindRefused(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		limit     int
		run       func(ctx context.Context, c *pgx.Conn) error
	}{
		{"parse", "Parse", 0, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, filler(event.MaxFieldLen)+" DELETE FROM patients WHERE id > $1", 0)
			return err
		}},
		{"bind", "Bind", 0, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "DELETE FROM patients WHERE note <> $1", strings.Repeat("x", event.MaxFieldLen+1))
			return err
		}},
		{"lowered limit", "Query", 4096, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, filler(5000)+" DELETE FROM patients")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := realRecorder(t)
			s := newStack(t, withRecorder(rec), func(tg *config.Target, _ *Options) { tg.Postgres.MaxStatementBytes = tc.limit })
			s.patients(t)
			tok, _ := s.token("alice")
			conn := s.connect(t, "alice", tok)
			wantLimitError(t, tc.run(context.Background(), conn))
			if n := s.patientCount(t); n != 3 {
				t.Fatalf("patients has %d rows: the refused statement ran", n)
			}
			wantRefusedNote(t, recorded(t, s, rec), tc.msg)
		})
	}
}

// TestLargeParameterHashedIsAllowed: under the hash policy a parameter is
// recorded as its HMAC, whole whatever its size, so it is not refused.
func TestLargeParameterHashedIsAllowed(t *testing.T) {
	s := newStack(t, func(tg *config.Target, _ *Options) { tg.Postgres.Parameters = paramsHash })
	s.patients(t)
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	tag, err := conn.Exec(context.Background(), "DELETE FROM patients WHERE note <> $1", strings.Repeat("x", event.MaxFieldLen+1))
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("DELETE = %v, %v", tag, err)
	}
}

// TestOversizedFunctionCallArgument: fast-path arguments are recorded as
// bind parameters are, and held to the same limit.
func TestOversizedFunctionCallArgument(t *testing.T) {
	o := &clientObserver{s: &session{}, red: redactor{policy: paramsRecord}, limit: 1024}
	var stream []byte
	stream, _ = (&pgproto3.FunctionCall{Function: 1, Arguments: [][]byte{[]byte("ok"), []byte(strings.Repeat("x", 1025))}}).Encode(stream)
	sc := scanner{h: o, maxStream: 1 << 20, maxDecode: 1 << 20}
	n, err := sc.scan(stream)
	ce, ok := asClientError(err)
	if !ok || ce.Code != codeProgramLimit || n != 0 || !strings.Contains(ce.Msg, "parameter $2") {
		t.Fatalf("scan = %d, %v; want the message refused with 54000", n, err)
	}
	if len(o.evs) != 1 || o.evs[0].Kind != event.KindNote || !o.evs[0].Denied || len(o.evs[0].Args) != 0 {
		t.Fatalf("events:\n%s", dump(o.evs))
	}
}

// The config's statement limit is what a recording field holds: a text at
// the limit is recorded whole.
func TestMaxStatementBytesIsTheRecordedLimit(t *testing.T) {
	if config.MaxStatementBytes != event.MaxFieldLen {
		t.Fatalf("config.MaxStatementBytes = %d, recorder's event.MaxFieldLen = %d", config.MaxStatementBytes, event.MaxFieldLen)
	}
}
