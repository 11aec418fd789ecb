// Package store opens the state store the configuration names: the
// embedded SQLite file (the default) or a PostgreSQL database shared by
// several brokers. The implementations live in the sqlite and postgres
// subpackages; storetest holds the suite both pass.
package store

import (
	"context"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// Open opens the store cfg selects, resolving a DSN given as a secret
// reference. An empty driver means SQLite. Errors never include the DSN.
func Open(ctx context.Context, cfg config.Store) (broker.Store, error) {
	switch cfg.Driver {
	case "", "sqlite":
		s, err := sqlite.Open(ctx, cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return s, nil
	case "postgres":
		if !cfg.DSN.IsSet() {
			return nil, fmt.Errorf("open store: store.dsn is required for the postgres driver")
		}
		dsn, err := cfg.DSN.Resolve()
		if err != nil {
			return nil, fmt.Errorf("open store: store.dsn: %w", err)
		}
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("open store: unknown driver %q (want sqlite or postgres)", cfg.Driver)
	}
}
