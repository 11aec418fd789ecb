package pgproxy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/holds"
)

type alertLog struct {
	mu  sync.Mutex
	got []GuardrailAlert
}

func (a *alertLog) GuardrailAlert(x GuardrailAlert) {
	a.mu.Lock()
	a.got = append(a.got, x)
	a.mu.Unlock()
}

// alert lets the statement run and tells the security channel.
func TestGuardrailAlertRuns(t *testing.T) {
	alerts := &alertLog{}
	store := holds.New(0)
	s := newStack(t, func(tg *config.Target, o *Options) {
		tg.Roles[0].Guardrails = &config.Guardrails{Rules: map[string]string{"truncate": "alert"}}
		o.Holds, o.Alerts = store, alerts
	})
	super(t, s.pg, s.db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1); ALTER TABLE t OWNER TO "+s.role)
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "TRUNCATE t"); err != nil {
		t.Fatalf("alerted TRUNCATE: %v", err)
	}
	alerts.mu.Lock()
	defer alerts.mu.Unlock()
	if len(alerts.got) != 1 || alerts.got[0].Text != "TRUNCATE t" || alerts.got[0].User != "alice" || alerts.got[0].Session == "" {
		t.Fatalf("alerts %+v", alerts.got)
	}
	if len(s.audit.Find("postgres.guardrail", "alert")) != 1 {
		t.Fatal("no alert audit record")
	}
}

// A SELECT without LIMIT on a protected table is held only above the
// row threshold, by the planner's estimate; COPY of it is always held;
// COPY FROM STDIN and LIMITed reads pass.
func TestGuardrailBulkExport(t *testing.T) {
	s, store, feed := guardedStack(t, config.Guardrails{ProtectedTables: []string{"public.t"}, ExportRows: 100,
		HoldTimeout: config.Duration(2 * time.Second)})
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Reading the protected table with LIMIT, or with a small estimated
	// result (one row), passes.
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM (SELECT * FROM t LIMIT 10) x").Scan(&n); err != nil || n != 10 {
		t.Fatalf("small read: %d %v", n, err)
	}
	done := make(chan error, 1)
	go func() {
		rows, err := conn.Query(ctx, "SELECT * FROM public.t")
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		done <- err
	}()
	h := <-feed.opened
	if h.Estimate != 500 || !strings.Contains(strings.Join(h.Rules, ","), "bulk_export (public.t)") {
		t.Fatalf("bulk export hold %+v", h)
	}
	store.Decide(h.ID, "bob", false, "")
	var pe *pgconn.PgError
	if err := <-done; !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("denied export: %v", err)
	}
	// COPY TO STDOUT of the protected table: held (times out here).
	_, err := conn.PgConn().CopyTo(ctx, discard{}, "COPY t TO STDOUT")
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("COPY out: %v", err)
	}
	<-feed.opened
	// COPY FROM STDIN into it is not an export.
	tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("1001\tz\n1002\tz\n"), "COPY t FROM STDIN")
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("COPY in: %v %v", tag, err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// The client's cancel request (psql's Ctrl-C) abandons a held statement:
// it gets an error and never runs.
func TestGuardrailHoldCancelled(t *testing.T) {
	s, store, feed := guardedStack(t, config.Guardrails{})
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := conn.Exec(ctx, "DELETE FROM t"); done <- err }()
	h := <-feed.opened
	// A CancelRequest on a connection of its own, as psql's Ctrl-C.
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	var pe *pgconn.PgError
	if err := <-done; !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "cancelled") {
		t.Fatalf("cancelled hold: %v", err)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("session after cancel: %v", err)
	}
	eventually := time.Now().Add(5 * time.Second)
	for {
		if got, _ := store.Get(h.ID); got.State == holds.Abandoned {
			break
		}
		if time.Now().After(eventually) {
			got, _ := store.Get(h.ID)
			t.Fatalf("hold state %s", got.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := count(t, s); n != 500 {
		t.Fatalf("%d rows", n)
	}
}

// Attacks on the bookkeeping of prepared statements: a held statement
// stays held when its name is parsed again, closed inside a failing
// batch, or prepared and executed with SQL.
func TestGuardrailPreparedStatementsStayHeld(t *testing.T) {
	s, store, feed := guardedStack(t, config.Guardrails{HoldTimeout: config.Duration(time.Minute)})
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	pc := conn.PgConn()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deny := func(what string, run func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- run() }()
		var h holds.Hold
		select {
		case h = <-feed.opened:
		case err := <-done:
			t.Fatalf("%s ran without a hold: %v", what, err)
		}
		store.Decide(h.ID, "bob", false, "")
		var pe *pgconn.PgError
		if err := <-done; !errors.As(err, &pe) || pe.Code != "42501" {
			t.Fatalf("%s: %v", what, err)
		}
		if n := count(t, s); n != 500 {
			t.Fatalf("%s: %d rows left", what, n)
		}
	}
	if _, err := pc.Prepare(ctx, "del", "DELETE FROM t", nil); err != nil {
		t.Fatal(err)
	}
	// Parse of the same name again (the target refuses it) and a Close
	// the target skips after an error in the same batch.
	b := &pgconn.Batch{}
	b.ExecParams("SELECT nonsense FROM", nil, nil, nil, nil)
	rr := pc.ExecBatch(ctx, b)
	rr.ReadAll()
	rr.Close()
	pc.Prepare(ctx, "del", "SELECT 1", nil)
	deny("named statement re-parsed", func() error {
		return pc.ExecPrepared(ctx, "del", nil, nil, nil).Read().Err
	})
	// Unnamed statement replaced by a Parse the target skipped.
	deny("unnamed statement", func() error {
		return pc.ExecParams(ctx, "DELETE FROM t", nil, nil, nil, nil).Read().Err
	})
	// SQL-level PREPARE runs nothing; each EXECUTE is held.
	if _, err := conn.Exec(ctx, "PREPARE sqldel AS DELETE FROM t", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("PREPARE: %v", err)
	}
	conn.Exec(ctx, "DEALLOCATE sqldel; PREPARE sqldel AS SELECT 1/0", pgx.QueryExecModeSimpleProtocol)
	deny("EXECUTE of a held PREPARE", func() error {
		_, err := conn.Exec(ctx, "EXECUTE sqldel", pgx.QueryExecModeSimpleProtocol)
		return err
	})
}

// The unnamed statement stays held when the Parse that would replace it
// is skipped by the target (an earlier error in the same batch).
func TestGuardrailUnnamedStatementSkippedParse(t *testing.T) {
	s, store, feed := guardedStack(t, config.Guardrails{HoldTimeout: config.Duration(time.Minute)})
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	fe := conn.PgConn().Frontend()
	send := func(msgs ...pgproto3.FrontendMessage) {
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// untilReady returns the SQLSTATEs of the errors before ReadyForQuery.
	untilReady := func() []string {
		var codes []string
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := m.(type) {
			case *pgproto3.ErrorResponse:
				codes = append(codes, m.Code)
			case *pgproto3.ReadyForQuery:
				return codes
			}
		}
	}
	send(&pgproto3.Parse{Query: "DELETE FROM t"}, &pgproto3.Sync{})
	if c := untilReady(); len(c) != 0 {
		t.Fatalf("parse: %v", c)
	}
	send(&pgproto3.Parse{Name: "x", Query: "SELECT * FROM no_such_table"}, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Sync{})
	if c := untilReady(); len(c) != 1 || c[0] != "42P01" {
		t.Fatalf("failing batch: %v", c)
	}
	done := make(chan []string, 1)
	go func() {
		send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		done <- untilReady()
	}()
	select {
	case h := <-feed.opened:
		store.Decide(h.ID, "bob", false, "")
	case c := <-done:
		t.Fatalf("the unnamed DELETE ran without a hold: %v", c)
	}
	if c := <-done; len(c) != 1 || c[0] != "42501" {
		t.Fatalf("denied: %v", c)
	}
	if n := count(t, s); n != 500 {
		t.Fatalf("%d rows left", n)
	}
}
