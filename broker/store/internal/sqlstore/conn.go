package sqlstore

import "context"

// Conn is one open transaction as the drivers expose it. Queries use $1,
// $2, … placeholders, which both SQLite and PostgreSQL accept.
type Conn interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Rows iterates over a query result.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Dialect holds what differs between the drivers. Drivers serialize
// write transactions themselves (SQLite's write lock, a PostgreSQL
// advisory lock), so AppendAudit can read the chain head and insert the
// next record without racing another append.
type Dialect struct {
	// Name prefixes every error, e.g. "sqlite store".
	Name string
	// IsUniqueViolation reports whether err is a unique-constraint failure.
	IsUniqueViolation func(err error) bool
	// SessionFTS says the sessions table has the sessions_fts trigram
	// index (SQLite, migration 0003), which content searches of three
	// characters or more go through. PostgreSQL's pg_trgm index serves
	// the plain LIKE, so it needs no flag.
	SessionFTS bool
}
