package sqlstore

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one schema change, applied once and recorded in the
// schema_migrations table.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// LoadMigrations reads every NNNN_name.sql file in dir, ordered by version.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	var ms []Migration
	seen := map[int64]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("load migrations: %s: name must start with a positive version and an underscore", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("load migrations: %s and %s share version %d", other, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load migrations: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// Migrate applies the migrations that c's database has not seen yet, in
// order, inside the caller's transaction. The caller serializes
// concurrent migrators (SQLite's write lock, a PostgreSQL advisory lock).
// A database that records a version this binary does not know was
// migrated by a newer Custos, and Migrate refuses to touch it.
func Migrate(ctx context.Context, c Conn, ms []Migration) (applied int, err error) {
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return 0, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done := map[int64]bool{}
	var newest int64
	rows, err := c.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return 0, fmt.Errorf("migrate: read versions: %w", err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return 0, fmt.Errorf("migrate: read versions: %w", err)
		}
		done[v] = true
		newest = max(newest, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("migrate: read versions: %w", err)
	}
	var known int64
	if len(ms) > 0 {
		known = ms[len(ms)-1].Version
	}
	if newest > known {
		return 0, fmt.Errorf("migrate: schema version %d is newer than this binary supports (%d); upgrade Custos", newest, known)
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if _, err := c.Exec(ctx, m.SQL); err != nil {
			return applied, fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
			m.Version, m.Name, fmtTime(nowUTC())); err != nil {
			return applied, fmt.Errorf("migrate: record %s: %w", m.Name, err)
		}
		applied++
	}
	return applied, nil
}
