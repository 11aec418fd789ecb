package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

func TestOpenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custos.db")
	s, err := Open(t.Context(), config.Store{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*sqlite.Store); !ok {
		t.Fatalf("Open with no driver returned %T, want *sqlite.Store", s)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database file not created: %v", err)
	}
}

func TestOpenPostgresFromSecretReference(t *testing.T) {
	pg := devstack.StartPostgres(t)
	dsn := pg.DSN(pg.CreateDatabase(t, "storeopen"))
	t.Setenv("CUSTOS_TEST_STORE_DSN", dsn)
	s, err := Open(t.Context(), config.Store{Driver: "postgres", DSN: "env:CUSTOS_TEST_STORE_DSN"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*postgres.Store); !ok {
		t.Fatalf("Open returned %T, want *postgres.Store", s)
	}
	if _, err := audit.NewLog(s).Append(t.Context(), audit.Entry{Actor: "a", Action: "x", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	const password = "s3cr3t-pw"
	cases := []struct {
		name string
		cfg  config.Store
		want string
	}{
		{"unknown driver", config.Store{Driver: "mysql"}, `unknown driver "mysql"`},
		{"postgres without dsn", config.Store{Driver: "postgres"}, "store.dsn is required"},
		{"unset env reference", config.Store{Driver: "postgres", DSN: "env:CUSTOS_TEST_NO_SUCH_VAR"}, "CUSTOS_TEST_NO_SUCH_VAR"},
		{"unreachable server", config.Store{Driver: "postgres",
			DSN: config.Secret("postgres://u:" + password + "@127.0.0.1:1/db?connect_timeout=2")}, "postgres store"},
		{"malformed dsn", config.Store{Driver: "postgres", DSN: config.Secret("postgres://u:" + password + "@[::1")}, "postgres store"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(t.Context(), c.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error leaks the DSN password: %q", err)
			}
		})
	}
}
