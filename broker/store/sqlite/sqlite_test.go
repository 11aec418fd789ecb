package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/store/storetest"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "custos.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) broker.Store {
		s, _ := openTemp(t)
		return s
	})
}

type rawDB struct{ db *sql.DB }

func (r rawDB) Exec(q string, args ...any) error {
	_, err := r.db.Exec(q, args...)
	return err
}

func (r rawDB) DropAuditGuards() error {
	_, err := r.db.Exec("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete")
	return err
}

func TestTamper(t *testing.T) {
	storetest.RunTamper(t, func(t *testing.T) (broker.Store, storetest.RawDB) {
		s, path := openTemp(t)
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return s, rawDB{db}
	})
}

// Two Store values on one file stand for two processes sharing it:
// BEGIN IMMEDIATE must serialize their appends into one chain.
func TestTwoStoresOneFile(t *testing.T) {
	a, path := openTemp(t)
	b, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	storetest.AppendConcurrently(t, []broker.Store{a, b}, 8, 25)
	rep, err := audit.Verify(t.Context(), b)
	if err != nil || !rep.OK || rep.Records != 200 {
		t.Fatalf("Verify = %+v, %v; want 200 intact records", rep, err)
	}
}

func TestOpenSettings(t *testing.T) {
	s, path := openTemp(t)
	var mode string
	if err := s.w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	for db, name := range map[*sql.DB]string{s.w: "writer", s.r: "reader"} {
		var fk, busy int
		if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
			t.Errorf("%s foreign_keys = %d, %v", name, fk, err)
		}
		if err := db.QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil || busy != busyTimeoutMS {
			t.Errorf("%s busy_timeout = %d, %v", name, busy, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	var versions int
	if err := s.r.QueryRow("SELECT count(*) FROM schema_migrations").Scan(&versions); err != nil || versions == 0 {
		t.Errorf("schema_migrations rows = %d, %v", versions, err)
	}
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	s, path := openTemp(t)
	log := audit.NewLog(s)
	if _, err := log.Append(t.Context(), audit.Entry{Actor: "a", Action: "x", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rec, err := audit.NewLog(s2).Append(t.Context(), audit.Entry{Actor: "a", Action: "y", Outcome: "success"})
	if err != nil || rec.Seq != 2 {
		t.Fatalf("append after reopen: seq %d, %v; want 2", rec.Seq, err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	s, path := openTemp(t)
	if _, err := s.w.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 'x')"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary supports") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "/tmp/x.db?mode=ro"} {
		if s, err := Open(t.Context(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// A burst of concurrent reads leaves the broker holding no more file
// descriptors than it had after Open (the soak found an idle broker
// holding more after load than before it).
func TestReadBurstKeepsDescriptors(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd")
	}
	dir := t.TempDir()
	s, err := Open(t.Context(), filepath.Join(dir, "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := dbDescriptors(dir)
	var inside, release sync.WaitGroup
	inside.Add(readConns)
	release.Add(1)
	errs := make(chan error, readConns)
	for range readConns {
		go func() {
			errs <- s.View(t.Context(), func(tx broker.Tx) error {
				_, err := tx.ListGrants(broker.GrantFilter{})
				inside.Done()
				release.Wait()
				return err
			})
		}()
	}
	inside.Wait()
	during := dbDescriptors(dir)
	release.Done()
	for range readConns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if after := dbDescriptors(dir); after > before || during > before {
		t.Fatalf("descriptors on the database files: %d after Open, %d during a burst of %d reads, %d after it", before, during, readConns, after)
	}
}

// dbDescriptors counts this process's descriptors on files in dir.
func dbDescriptors(dir string) int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, dir) {
			n++
		}
	}
	return n
}
