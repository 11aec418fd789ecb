package backup_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/backup"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/deploy/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

func openPostgres(t *testing.T, pg *devstack.Postgres) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), pg.DSN(pg.CreateDatabase(t, "backup")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Backups work across drivers: PostgreSQL to SQLite and SQLite to
// PostgreSQL give the same store, and the chain continues after restore.
func TestPostgresDriver(t *testing.T) {
	pg := devstack.StartPostgres(t)
	cases := []struct {
		name     string
		src, dst func(t *testing.T) broker.Store
	}{
		{"postgres to sqlite", func(t *testing.T) broker.Store { return openPostgres(t, pg) },
			func(t *testing.T) broker.Store { return openSQLite(t, filepath.Join(t.TempDir(), "dst.db")) }},
		{"sqlite to postgres", func(t *testing.T) broker.Store { return openSQLite(t, filepath.Join(t.TempDir(), "src.db")) },
			func(t *testing.T) broker.Store { return openPostgres(t, pg) }},
		{"postgres to postgres", func(t *testing.T) broker.Store { return openPostgres(t, pg) },
			func(t *testing.T) broker.Store { return openPostgres(t, pg) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := tc.src(t), tc.dst(t)
			ks := newKeys(t, filepath.Join(t.TempDir(), "data"))
			populate(t, src)
			dir, m := takeBackup(t, src, ks)
			c, err := backup.Check(dir, pass)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res, err := backup.Restore(t.Context(), c, backup.RestoreOptions{Store: dst, Keys: destKeys(filepath.Join(t.TempDir(), "data"))})
			if err != nil {
				t.Fatal(err)
			}
			if res.Head != m.Head {
				t.Errorf("head %+v, want %+v", res.Head, m.Head)
			}
			if want, got := snap(t, src), snap(t, dst); !reflect.DeepEqual(want, got) {
				t.Errorf("restored store differs:\n got %+v\nwant %+v", got, want)
			}
			// A second restore into the same store is refused.
			if _, err := backup.Restore(t.Context(), c, backup.RestoreOptions{Store: dst}); err == nil {
				t.Error("restore into a non-empty store succeeded")
			}
		})
	}
}
