package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/store/internal/sqlstore"
	"github.com/custos-pam/custos/broker/store/storetest"
	"github.com/custos-pam/custos/deploy/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// newDB returns the DSN of a fresh, empty database.
func newDB(t *testing.T) string {
	t.Helper()
	pg := devstack.StartPostgres(t)
	return pg.DSN(pg.CreateDatabase(t, "store"))
}

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) broker.Store { return open(t, newDB(t)) })
}

type rawDB struct{ c *pgx.Conn }

func (r rawDB) Exec(q string, args ...any) error {
	_, err := r.c.Exec(context.Background(), q, args...)
	return err
}

func (r rawDB) DropAuditGuards() error {
	return r.Exec("DROP TRIGGER audit_no_update ON audit; DROP TRIGGER audit_no_delete ON audit")
}

func TestTamper(t *testing.T) {
	storetest.RunTamper(t, func(t *testing.T) (broker.Store, storetest.RawDB) {
		dsn := newDB(t)
		s := open(t, dsn)
		c, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return s, rawDB{c}
	})
}

// Two pools on one database stand for two broker processes appending at
// once: the advisory lock must keep the chain single.
func TestTwoBrokersAppend(t *testing.T) {
	dsn := newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	storetest.AppendConcurrently(t, []broker.Store{a, b}, 20, 25)
	rep, err := audit.Verify(t.Context(), b)
	if err != nil || !rep.OK || rep.Records != 500 {
		t.Fatalf("Verify = %+v, %v; want 500 intact records", rep, err)
	}
}

// Two brokers doing read-modify-write at once lose nothing: Updates are
// serialized across processes, not only where they append to the audit log.
func TestTwoBrokersReadModifyWrite(t *testing.T) {
	dsn := newDB(t)
	storetest.IncrementConcurrently(t, []broker.Store{open(t, dsn), open(t, dsn)}, 10, 10)
}

func TestGrantEventsAcrossBrokers(t *testing.T) {
	dsn := newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := t.Context()
	fromA, fromB := a.GrantEvents(ctx), b.GrantEvents(ctx)

	ev := broker.GrantEvent{GrantID: "grt_x", State: broker.GrantRevoked, Reason: "revoked by sec"}
	if err := a.Update(ctx, func(tx broker.Tx) error { tx.NotifyGrant(ev); return nil }); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan broker.GrantEvent{"a (in-process)": fromA, "b (LISTEN)": fromB} {
		select {
		case got := <-ch:
			if got != ev {
				t.Errorf("%s got %+v, want %+v", name, got, ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no event", name)
		}
	}

	// A rolled-back transaction notifies nobody.
	_ = b.Update(ctx, func(tx broker.Tx) error {
		tx.NotifyGrant(broker.GrantEvent{GrantID: "grt_rolled_back"})
		return errors.New("abort")
	})
	ev2 := broker.GrantEvent{GrantID: "grt_y", State: broker.GrantExpired}
	if err := b.Update(ctx, func(tx broker.Tx) error { tx.NotifyGrant(ev2); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-fromA:
		if got != ev2 {
			t.Errorf("a got %+v, want %+v (only the committed event)", got, ev2)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a: no event from b")
	}
	// Nothing else: a heard its own event once, not again through NOTIFY.
	select {
	case got := <-fromA:
		t.Errorf("a got an extra event %+v", got)
	case <-time.After(500 * time.Millisecond):
	}
}

// The listener reconnects after its connection is killed.
func TestListenerReconnects(t *testing.T) {
	dsn := newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	events := b.GrantEvents(t.Context())
	_, err := a.pool.Exec(t.Context(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := a.Update(t.Context(), func(tx broker.Tx) error {
			tx.NotifyGrant(broker.GrantEvent{GrantID: "grt_after"})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-events:
			if ev.Resync {
				continue
			}
			if ev.GrantID != "grt_after" {
				t.Fatalf("got %+v", ev)
			}
			return
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatal("no event after the listening connection was killed")
		}
	}
}

// A revocation another broker announces while the listening connection is
// down is not delivered, so the reconnect announces a resync: subscribers
// re-check their grants against the store instead of missing the end.
func TestListenerResyncAfterMissedEvents(t *testing.T) {
	dsn := newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	events := b.GrantEvents(t.Context())
	// Terminate b's listener and wait until it is gone, then notify
	// while b waits to reconnect. Whichever comes first after that, the
	// reconnect or a's event, b's first event is the resync.
	if _, err := a.pool.Exec(t.Context(),
		"SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"); err != nil {
		t.Fatal(err)
	}
	missed := broker.GrantEvent{GrantID: "grt_missed", State: broker.GrantRevoked, Reason: "revoked while b was deaf"}
	if err := a.Update(t.Context(), func(tx broker.Tx) error { tx.NotifyGrant(missed); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if !ev.Resync || ev.GrantID != "" {
			t.Fatalf("first event after the outage = %+v, want a resync", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no resync after the listening connection came back")
	}
}

// Several brokers starting at once on an empty database take turns
// migrating it.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := newDB(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(t.Context(), dsn)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := open(t, dsn)
	ms, err := sqlstore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.pool.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Errorf("schema_migrations rows = %d, %v; want %d", n, err, len(ms))
	}
}

// Another client locks a row, then waits for the write lock an Update
// holds while the Update waits for that row: a deadlock. With a short
// deadlock_timeout the Update's backend detects it and is aborted, and
// Update runs fn again.
func TestUpdateRetriesDeadlock(t *testing.T) {
	dsn := newDB(t)
	s := open(t, dsn+"&deadlock_timeout=100ms")
	ctx := t.Context()
	if err := s.Update(ctx, func(tx broker.Tx) error { return tx.PutGrant(broker.Grant{ID: "grt_1"}) }); err != nil {
		t.Fatal(err)
	}
	raw, err := pgx.Connect(ctx, dsn+"&deadlock_timeout=10s")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(context.Background())
	rawTx, err := raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawTx.Exec(ctx, "UPDATE grants SET data = data WHERE id = 'grt_1'"); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- s.Update(ctx, func(tx broker.Tx) error {
			runs.Add(1)
			return tx.PutGrant(broker.Grant{ID: "grt_1", Reason: "updated"})
		})
	}()
	// Wait until the Update holds the write lock and waits for the row.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO grants%'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Update never waited for the row")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := rawTx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", writeLockKey); err != nil {
		t.Fatalf("raw client lost the deadlock instead: %v", err)
	}
	if err := rawTx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Update: %v", err)
	}
	if runs.Load() != 2 {
		t.Errorf("fn ran %d times, want 2 (aborted once, then retried)", runs.Load())
	}
	err = s.View(ctx, func(tx broker.Tx) error {
		g, err := tx.GetGrant("grt_1")
		if err == nil && g.Reason != "updated" {
			t.Errorf("grant after retry = %+v", g)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// While one broker's Update is open, another broker's Update waits for it
// and then sees its result: it runs once and gets the next seq. (The seq
// primary key alone would also stop a fork, but by failing the second
// transaction, which Update would then have to run again.)
func TestAuditLockSerializesAppends(t *testing.T) {
	dsn := newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := t.Context()
	aAppended, release := make(chan struct{}), make(chan struct{})
	errA := make(chan error, 1)
	go func() {
		errA <- a.Update(ctx, func(tx broker.Tx) error {
			if _, err := tx.AppendAudit(broker.AuditRecord{Actor: "a", Action: "x", Outcome: "success"}); err != nil {
				return err
			}
			close(aAppended)
			<-release
			return nil
		})
	}()
	<-aAppended
	var runs atomic.Int32
	var rec broker.AuditRecord
	errB := make(chan error, 1)
	go func() {
		errB <- b.Update(ctx, func(tx broker.Tx) error {
			runs.Add(1)
			var err error
			rec, err = tx.AppendAudit(broker.AuditRecord{Actor: "b", Action: "x", Outcome: "success"})
			return err
		})
	}()
	select {
	case err := <-errB:
		t.Fatalf("b's append finished while a held the chain: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	if err := <-errB; err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 1 || rec.Seq != 2 {
		t.Errorf("b ran %d times and got seq %d; want once, seq 2", runs.Load(), rec.Seq)
	}
}

// Searching session content for a rare string goes through the pg_trgm
// index migration 0003 creates, not a scan of every session.
func TestSessionSearchUsesTrigramIndex(t *testing.T) {
	s := open(t, newDB(t))
	ctx := t.Context()
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'sessions_search_trgm'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("sessions_search_trgm indexes = %d, %v; want 1 (pg_trgm installed with the server?)", n, err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := s.Update(ctx, func(tx broker.Tx) error {
		for i := range 2000 {
			idx := "ls -la /var/log\nsudo systemctl restart nginx\n"
			if i == 1234 {
				idx += "pg_dump --data-only customers\n"
			}
			err := tx.PutSession(broker.Session{ID: fmt.Sprintf("ses_%05d", i), GrantID: "grt_1", User: "alice", Target: "db1",
				Role: "ops", Protocol: "ssh", StartedAt: base.Add(time.Duration(i) * time.Minute), State: broker.SessionClosed, Index: idx})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE sessions"); err != nil {
		t.Fatal(err)
	}
	var got []broker.Session
	err = s.View(ctx, func(tx broker.Tx) error {
		got, err = tx.ListSessions(broker.SessionFilter{Contains: "PG_DUMP", Limit: 500})
		return err
	})
	if err != nil || len(got) != 1 || got[0].ID != "ses_01234" {
		t.Fatalf("ListSessions(PG_DUMP) = %d sessions, %v; want ses_01234", len(got), err)
	}
	// The statement ListSessions sends for a content search can use the
	// index. At this size reading the table costs less, so the planner
	// is told to avoid that; with 100,000 sessions it picks the index by
	// itself (make bench, session search).
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off; SET enable_indexscan = off"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "RESET enable_seqscan; RESET enable_indexscan")
	rows, err := conn.Query(ctx, `EXPLAIN SELECT index_text, data FROM sessions WHERE search_text LIKE $1 ESCAPE '\'`+
		` ORDER BY started_at DESC, id DESC LIMIT $2`, `%pg\_dump%`, 500)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "sessions_search_trgm") {
		t.Errorf("a rare-string search does not use the trigram index:\n%s", plan.String())
	}
}
