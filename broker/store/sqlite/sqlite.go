// Package sqlite is the embedded state store: one SQLite file in WAL mode,
// through the pure-Go modernc.org/sqlite driver. It is the default store
// and fits a single broker process. Writes go through one connection and
// begin with BEGIN IMMEDIATE, so Update transactions are serialized, in
// this process and against any other process that opens the same file.
// Reads use a separate pool of read-only connections and run alongside
// writes.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// busyTimeoutMS is how long a statement waits for another process's write
// lock before failing with SQLITE_BUSY.
const busyTimeoutMS = 10000

// readConns bounds the read-only connection pool.
const readConns = 4

// The read pool is opened whole at start and kept: a connection closed
// while the writer holds its locks does not give its database descriptor
// back (SQLite's unix VFS defers the close and reuses the descriptor on
// the next open), so a pool that grew under load and shrank when idle
// would still hold more descriptors than at start. Opened whole, the
// broker's descriptors are the same idle, busy and after a burst.

var dialect = sqlstore.Dialect{
	Name: "sqlite store",
	IsUniqueViolation: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) &&
			(e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
	SessionFTS: true,
}

// Store is the SQLite state store.
type Store struct {
	w   *sql.DB // one connection, BEGIN IMMEDIATE
	r   *sql.DB // read-only connections
	hub sqlstore.Hub
}

var _ broker.Store = (*Store)(nil)

// Open opens or creates the database file at path (mode 0600 when
// created) and applies pending migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite store: invalid database path %q", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	f.Close()

	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeoutMS)
	w, err := sql.Open("sqlite", path+"?"+common+
		"&_txlock=immediate&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("sqlite store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite store: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite store: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	s.r = r
	if err := fillPool(ctx, r, readConns); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite store: open %s: %w", path, err)
	}
	return s, nil
}

// fillPool opens n connections at once and returns them to db's idle
// pool, where they stay (no idle or lifetime limit).
func fillPool(ctx context.Context, db *sql.DB, n int) error {
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close() // back to the pool
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		if err := c.PingContext(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := sqlstore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := sqlstore.Migrate(ctx, conn{tx}, ms); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// View runs fn in a read-only transaction on its own snapshot.
func (s *Store) View(ctx context.Context, fn func(broker.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store: begin: %w", err)
	}
	defer tx.Rollback()
	return fn(sqlstore.NewTx(ctx, conn{tx}, &dialect, true))
}

// Update runs fn in a write transaction and commits when fn returns nil.
// Updates run one at a time: calling Update from inside fn deadlocks.
// Grant events announced in fn are delivered after the commit.
func (s *Store) Update(ctx context.Context, fn func(broker.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store: begin: %w", err)
	}
	defer tx.Rollback()
	t := sqlstore.NewTx(ctx, conn{tx}, &dialect, false)
	if err := fn(t); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite store: commit: %w", err)
	}
	s.hub.Publish(t.Events()...)
	return nil
}

// GrantEvents delivers the grant events of transactions committed through
// this Store after the call. Other processes sharing the file are not
// heard.
func (s *Store) GrantEvents(ctx context.Context) <-chan broker.GrantEvent {
	return s.hub.Subscribe(ctx)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite store: ping: %w", err)
	}
	return nil
}

// Close closes the database and every GrantEvents channel.
func (s *Store) Close() error {
	s.hub.Close()
	var errR error
	if s.r != nil {
		errR = s.r.Close()
	}
	return errors.Join(s.w.Close(), errR)
}

// conn adapts a database/sql transaction to sqlstore.Conn.
type conn struct{ tx *sql.Tx }

func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := c.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
