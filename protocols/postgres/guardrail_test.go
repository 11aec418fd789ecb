package pgproxy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/holds"
	"github.com/custos-pam/custos/protocols/postgres/guard"
	"github.com/custos-pam/custos/recorder/event"
)

// holdFeed is a holds.Notifier that hands opened holds to the test, as
// Slack or the web UI would show them to an approver.
type holdFeed struct{ opened chan holds.Hold }

func (f *holdFeed) HoldOpened(h holds.Hold) { f.opened <- h }
func (f *holdFeed) HoldDecided(holds.Hold)  {}

func (f *holdFeed) next(t *testing.T) holds.Hold {
	t.Helper()
	select {
	case h := <-f.opened:
		return h
	case <-time.After(20 * time.Second):
		t.Fatal("no hold opened")
		return holds.Hold{}
	}
}

// guardedStack is a stack whose role "rw" has guardrails, a holds store
// and a table t of 500 rows owned by the session's database login.
func guardedStack(t *testing.T, g config.Guardrails) (*stack, *holds.Store, *holdFeed) {
	t.Helper()
	store := holds.New(0)
	feed := &holdFeed{opened: make(chan holds.Hold, 8)}
	store.AddNotifier(feed)
	s := newStack(t, func(tg *config.Target, o *Options) {
		tg.Roles[0].Guardrails = &g
		o.Holds = store
	})
	super(t, s.pg, s.db, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'x' FROM generate_series(1, 500) g; ANALYZE t; ALTER TABLE t OWNER TO "+s.role)
	return s, store, feed
}

func count(t *testing.T, s *stack) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.pg.DSN(s.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGuardrailRulesMatchConfig(t *testing.T) {
	var names []string
	for _, r := range guard.Rules {
		names = append(names, string(r))
	}
	if !slices.Equal(names, config.GuardrailRules) {
		t.Fatalf("guard rules %v, config rules %v", names, config.GuardrailRules)
	}
}

// A denied statement gets SQLSTATE 42501 and the session goes on; nothing
// of it reaches the target, whatever it is hidden in.
func TestGuardrailDenyPsql(t *testing.T) {
	s, _, _ := guardedStack(t, config.Guardrails{})
	tok, _ := s.token("alice")
	script := `\set VERBOSITY verbose
DROP TABLE t;
SELECT 1; DROP TABLE t;
/* harmless */ DO $$ BEGIN EXECUTE 'SELECT 1'; DROP TABLE t; END $$;
WITH x AS (SELECT 1) SELECT set_config('role', 'postgres', false);
DELET FROM t;
BEGIN;
INSERT INTO t VALUES (1000, 'y');
TRUNCATE t;
COMMIT;
SELECT 'alive', count(*) FROM t;
`
	out, err := s.runPsql(t, "alice", tok, testTarget, "require", script)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	for _, want := range []string{
		"ERROR:  42501: custos: statement denied by guardrail drop (table)",
		"ERROR:  42501: custos: statement denied by guardrail set_role (set_config role)",
		"ERROR:  42501: custos: statement denied by guardrail unparsed",
		"ERROR:  42501: custos: statement denied by guardrail truncate (t)",
		"alive",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("psql output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "drop (table)"); n != 3 {
		t.Errorf("%d drops denied, want 3:\n%s", n, out)
	}
	if n := count(t, s); n != 500 {
		t.Fatalf("table has %d rows, want 500 (the INSERT before the denied TRUNCATE is rolled back)", n)
	}
	rec := s.rec.Last(t)
	s.waitNoSessions(t)
	if n := len(rec.Find(event.KindNote, "guardrail")); n != 6 {
		t.Errorf("%d guardrail notes, want 6:\n%s", n, rec.Dump())
	}
	if got := s.audit.Find("postgres.guardrail", "denied"); len(got) != 6 {
		t.Errorf("%d denied audit records, want 6", len(got))
	}
}

// The extended protocol is denied at Parse, and the batch stays in sync:
// pgx sees 42501 and its connection keeps working.
func TestGuardrailDenyExtendedPgx(t *testing.T) {
	s, _, _ := guardedStack(t, config.Guardrails{})
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
		_, err := conn.Exec(ctx, "DROP TABLE t", mode)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "guardrail drop") {
			t.Fatalf("mode %v: DROP: %v, want 42501", mode, err)
		}
		_, err = conn.Exec(ctx, "UPDATE t SET v = $1 WHERE id = $2 OR true; DROP TABLE t", mode, "z", 1)
		if err == nil {
			t.Fatalf("mode %v: multi-statement extended query ran", mode)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM t WHERE id > $1", 0).Scan(&n); err != nil || n != 500 {
			t.Fatalf("mode %v: session after deny: n=%d err=%v", mode, n, err)
		}
	}
	// A batch: the INSERT before the denied statement is in the same
	// implicit transaction and rolled back, as after any error.
	b := &pgx.Batch{}
	b.Queue("INSERT INTO t VALUES (1001, 'b')")
	b.Queue("ALTER TABLE t OWNER TO postgres")
	b.Queue("SELECT 1")
	err := conn.SendBatch(ctx, b).Close()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("batch: %v, want 42501", err)
	}
	if n := count(t, s); n != 500 {
		t.Fatalf("after batch: %d rows, want 500", n)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("ping after batch: %v", err)
	}
}

// A DELETE without WHERE waits for an approver, who sees its text and row
// estimate; it runs only after approval, exactly once. Sending it again
// needs a new approval; a denial and a timeout leave the table alone.
func TestGuardrailHoldDeleteApprovedOnce(t *testing.T) {
	s, store, feed := guardedStack(t, config.Guardrails{HoldTimeout: config.Duration(3 * time.Second)})
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	type result struct {
		tag pgconn.CommandTag
		err error
	}
	run := func(sql string, args ...any) chan result {
		ch := make(chan result, 1)
		go func() { tag, err := conn.Exec(ctx, sql, args...); ch <- result{tag, err} }()
		return ch
	}

	done := run("DELETE FROM t")
	h := feed.next(t)
	if h.Text != "DELETE FROM t" || h.User != "alice" || h.Role != "rw" || h.Session == "" || h.Estimate != 500 {
		t.Fatalf("hold shown to approver: %+v", h)
	}
	if !slices.ContainsFunc(h.Rules, func(r string) bool { return strings.HasPrefix(r, "delete_without_where") }) {
		t.Fatalf("rules %v", h.Rules)
	}
	time.Sleep(300 * time.Millisecond) // a held statement must not have run
	if n := count(t, s); n != 500 {
		t.Fatalf("held DELETE ran before approval: %d rows left", n)
	}
	if _, err := store.Decide(h.ID, "alice", true, ""); !errors.Is(err, holds.ErrOwnHold) {
		t.Fatalf("session's own user decided: %v", err)
	}
	if _, err := store.Decide(h.ID, "bob", true, "INC-1"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.tag.String() != "DELETE 500" {
		t.Fatalf("approved DELETE: %v %v", r.tag, r.err)
	}
	if _, err := store.Decide(h.ID, "carol", true, ""); !errors.Is(err, holds.ErrDecided) {
		t.Fatalf("second decision on a used hold: %v", err)
	}

	// Replay: the same statement again is held again; denied, it fails
	// with 42501 and the session goes on.
	super(t, s.pg, s.db, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) g")
	done = run("DELETE FROM t")
	h2 := feed.next(t)
	if h2.ID == h.ID || h2.Digest != h.Digest {
		t.Fatalf("replayed statement: hold %s digest %s (first %s %s)", h2.ID, h2.Digest, h.ID, h.Digest)
	}
	if _, err := store.Decide(h2.ID, "bob", false, ""); err != nil {
		t.Fatal(err)
	}
	r = <-done
	var pe *pgconn.PgError
	if !errors.As(r.err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "denied by bob") {
		t.Fatalf("denied hold: %v", r.err)
	}

	// A parameterized UPDATE without WHERE: the approval is bound to the
	// parameters; a prepared statement re-executed is held each time.
	done = run("UPDATE t SET v = $1", "first")
	h3 := feed.next(t)
	if h3.Params != 1 || h3.Digest == holdDigest(h3.Text, nil) {
		t.Fatalf("parameterized hold: %+v", h3)
	}
	store.Decide(h3.ID, "bob", true, "")
	if r = <-done; r.err != nil || r.tag.String() != "UPDATE 10" {
		t.Fatalf("approved UPDATE: %v %v", r.tag, r.err)
	}
	done = run("UPDATE t SET v = $1", "second")
	h4 := feed.next(t)
	if h4.Digest == h3.Digest {
		t.Fatal("other parameters, same digest")
	}
	// Nobody decides: the hold times out as denied.
	r = <-done
	if !errors.As(r.err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "no decision within") {
		t.Fatalf("timed-out hold: %v", r.err)
	}
	if got, _ := store.Get(h4.ID); got.State != holds.Expired {
		t.Fatalf("hold state %s", got.State)
	}
	var v string
	if err := conn.QueryRow(ctx, "SELECT min(v) FROM t").Scan(&v); err != nil || v != "first" {
		t.Fatalf("after timeout: v=%q err=%v", v, err)
	}
	rec := s.rec.Last(t)
	conn.Close(ctx)
	s.waitNoSessions(t)
	var outcomes []string
	for _, e := range rec.Find(event.KindNote, "guardrail") {
		outcomes = append(outcomes, e.Name)
	}
	want := []string{"held", "approved", "held", "denied", "prepared", "held", "approved", "held", "expired"}
	if !slices.Equal(outcomes, want) {
		t.Fatalf("recorded guardrail outcomes %v, want %v\n%s", outcomes, want, rec.Dump())
	}
	if got := len(rec.Find(event.KindPGComplete, "")); got == 0 {
		t.Log(rec.Dump())
	}
}

// psql shows the NOTICE that the statement waits, and the DELETE runs
// after approval.
func TestGuardrailHoldPsqlNotice(t *testing.T) {
	s, store, feed := guardedStack(t, config.Guardrails{})
	tok, _ := s.token("alice")
	type res struct {
		out string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		out, err := s.runPsql(t, "alice", tok, testTarget, "require", "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) AS deleted FROM d;\n")
		ch <- res{out, err}
	}()
	h := feed.next(t)
	if h.Estimate != 500 {
		t.Errorf("estimate %d (%s), want 500", h.Estimate, h.EstimateNote)
	}
	store.Decide(h.ID, "bob", true, "")
	r := <-ch
	if r.err != nil || !strings.Contains(r.out, "NOTICE:  custos: statement held for approval (guardrail delete_without_where (t))") ||
		!strings.Contains(r.out, "500") {
		t.Fatalf("psql: %v\n%s", r.err, r.out)
	}
	if n := count(t, s); n != 0 {
		t.Fatalf("%d rows left", n)
	}
}

// A role without guardrails is relayed as before: nothing is parsed.
func TestGuardrailNoneForRoleWithout(t *testing.T) {
	s := newStack(t)
	super(t, s.pg, s.db, "CREATE TABLE t (id int); ALTER TABLE t OWNER TO "+s.role)
	tok, _ := s.token("alice")
	out, err := s.runPsql(t, "alice", tok, testTarget, "require", "DELET FROM t;\nDROP TABLE t;\n")
	if err != nil || !strings.Contains(out, `syntax error at or near "DELET"`) || strings.Contains(out, "custos") {
		t.Fatalf("psql: %v\n%s", err, out)
	}
}
