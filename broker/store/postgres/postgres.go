// Package postgres is the state store for several broker replicas sharing
// one PostgreSQL database, through a pgx connection pool.
//
// Update transactions are serialized across every process by a
// transaction-scoped advisory lock taken when they begin, as SQLite's
// write lock does for one file: a read-modify-write in Update never loses
// another broker's concurrent change, and concurrent audit appends never
// fork the chain (the seq primary key backs the lock up). Grant events are published with pg_notify inside the
// transaction, so they reach other replicas only if it commits; each
// Store LISTENs on one dedicated connection and delivers the other
// replicas' events, while its own are delivered in-process right after
// commit. Each event therefore reaches each process once.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Advisory lock keys (pg_advisory_xact_lock takes a bigint). They only
// need to be distinct from other applications' keys in the same database.
const (
	writeLockKey   int64 = 0x637573746f730001 // "custos" + 1
	migrateLockKey int64 = 0x637573746f730002
)

// notifyChannel is the LISTEN/NOTIFY channel for grant events.
const notifyChannel = "custos_grants"

// maxAttempts bounds how often Update runs fn when PostgreSQL aborts the
// transaction for a deadlock or serialization failure.
const maxAttempts = 5

var dialect = sqlstore.Dialect{
	Name:              "postgres store",
	IsUniqueViolation: func(err error) bool { return pgCode(err) == "23505" },
	// Update already holds the write lock; no further audit lock.
}

// Store is the PostgreSQL state store.
type Store struct {
	pool   *pgxpool.Pool
	hub    sqlstore.Hub
	origin string // tags this Store's notifications
	log    *slog.Logger

	stopListen context.CancelFunc
	listenDone chan struct{}
	closeOnce  sync.Once
}

var _ broker.Store = (*Store)(nil)

// Open connects to the database dsn names, applies pending migrations
// (several brokers starting at once take turns) and starts listening for
// other replicas' grant events.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx masks the password in the connection string it quotes.
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	s := &Store{pool: pool, origin: broker.NewID("brk"), log: slog.Default().With("component", "postgres store")}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: connect: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	if err := s.startListener(ctx, cfg.ConnConfig.Copy()); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: listen: %w", err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := sqlstore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		n, err := sqlstore.Migrate(ctx, conn{tx}, ms)
		if n > 0 {
			s.log.Info("applied schema migrations", "count", n)
		}
		return err
	})
}

// View runs fn in a read-only, repeatable-read transaction, so every read
// in fn sees the same snapshot.
func (s *Store) View(ctx context.Context, fn func(broker.Tx) error) error {
	return unavailable(s.view(ctx, fn))
}

func (s *Store) view(ctx context.Context, fn func(broker.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres store: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return fn(sqlstore.NewTx(ctx, conn{tx}, &dialect, true))
}

// Update runs fn in a read-committed transaction that first takes the
// store-wide write lock, so Updates from every broker run one at a time
// and each sees everything committed before it; it commits when fn
// returns nil. Reads from View are not blocked. When PostgreSQL aborts
// the transaction for a deadlock or a serialization failure (possible
// only with other clients writing the same rows), Update rolls back and
// runs fn again, up to five times in all, so fn must not have effects
// outside the Tx. Grant events announced in fn are sent with pg_notify
// before the commit and delivered in-process after it.
func (s *Store) Update(ctx context.Context, fn func(broker.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.update(ctx, fn)
		if err == nil || attempt == maxAttempts || !retryable(err) || ctx.Err() != nil {
			return unavailable(err)
		}
		s.log.Debug("retrying transaction", "attempt", attempt, "code", pgCode(err))
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(20*time.Millisecond) << attempt))):
		case <-ctx.Done():
			return unavailable(err)
		}
	}
}

func (s *Store) update(ctx context.Context, fn func(broker.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("postgres store: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", writeLockKey); err != nil {
		return fmt.Errorf("postgres store: take write lock: %w", err)
	}
	t := sqlstore.NewTx(ctx, conn{tx}, &dialect, false)
	if err := fn(t); err != nil {
		return err
	}
	for _, ev := range t.Events() {
		payload, err := json.Marshal(notification{Origin: s.origin, GrantEvent: clip(ev)})
		if err != nil {
			return fmt.Errorf("postgres store: notify: %w", err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", notifyChannel, string(payload)); err != nil {
			return fmt.Errorf("postgres store: notify: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres store: commit: %w", err)
	}
	s.hub.Publish(t.Events()...)
	return nil
}

// retryable reports whether a whole transaction may be retried: a
// deadlock, a serialization failure, or two appends that raced past the
// write lock to the same seq (a client that does not take it).
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01":
		return true
	case "23505":
		return pe.ConstraintName == "audit_pkey"
	}
	return false
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// GrantEvents delivers grant events committed from now on by this Store
// and, through LISTEN/NOTIFY, by every other Store on the same database.
// Events sent while the listening connection is down (it reconnects on
// its own) are not replayed.
func (s *Store) GrantEvents(ctx context.Context) <-chan broker.GrantEvent {
	return s.hub.Subscribe(ctx)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return unavailable(fmt.Errorf("postgres store: ping: %w", err))
	}
	return nil
}

// Close stops listening, closes every GrantEvents channel and the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopListen()
		<-s.listenDone
		s.hub.Close()
		s.pool.Close()
	})
	return nil
}

// conn adapts a pgx transaction to sqlstore.Conn.
type conn struct{ tx pgx.Tx }

func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (c conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	return c.tx.Query(ctx, q, args...)
}
