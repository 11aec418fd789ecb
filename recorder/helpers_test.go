package recorder

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// testEnv is a recorder's surroundings: a real SQLite state store for the
// audit log and session index, signing and wrapping keys, and a spool.
type testEnv struct {
	t      testing.TB
	dir    string
	state  *sqlite.Store
	audit  *audit.Log
	signer *manifest.Signer
	keys   KeyWrapper
	store  ObjectStore
}

func newEnv(t testing.TB, st ObjectStore) *testEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	state, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	signer, err := manifest.LoadSigner(filepath.Join(dir, "keys", "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keywrap.LoadLocal(filepath.Join(dir, "keys", "wrap.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st == nil {
		ls, err := localdir.New(filepath.Join(dir, "recordings"))
		if err != nil {
			t.Fatal(err)
		}
		st = ls
	}
	return &testEnv{t: t, dir: dir, state: state, audit: audit.NewLog(state), signer: signer, keys: keys, store: st}
}

func (e *testEnv) config() Config {
	return Config{
		SpoolDir: filepath.Join(e.dir, "spool"),
		Store:    e.store,
		Signer:   e.signer,
		Keys:     e.keys,
		Audit:    e.audit,
		Index:    broker.SessionIndex{Store: e.state},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// recorder starts a Recorder closed at the end of the test.
func (e *testEnv) recorder(mods ...func(*Config)) *Recorder {
	e.t.Helper()
	cfg := e.config()
	for _, m := range mods {
		m(&cfg)
	}
	r, err := New(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

func (e *testEnv) session(id string) broker.Session {
	e.t.Helper()
	s, err := broker.SessionIndex{Store: e.state}.GetSession(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *testEnv) auditRecords(action string) []broker.AuditRecord {
	e.t.Helper()
	var out []broker.AuditRecord
	err := e.state.View(context.Background(), func(tx broker.Tx) error {
		var err error
		out, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: action})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitAudit polls for at least n audit records of an action.
func (e *testEnv) waitAudit(action string, n int) []broker.AuditRecord {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := e.auditRecords(action)
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testHeader(id string) event.Header {
	return event.Header{
		SessionID: id, GrantID: "grt_1", User: "alice", Target: "prod-db", Role: "rw",
		Protocol: "ssh", ClientAddr: "127.0.0.1:50000",
		Policy: event.Policy{Approvers: []string{"bob"}, Reason: "INC-1"},
	}
}

func drain(t testing.TB, r *Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
}

// readAll opens a recording as auditor "sec" and returns its events.
func readAll(t testing.TB, r *Recorder, id string) []event.Event {
	t.Helper()
	ctx := context.Background()
	rec, err := r.Open(ctx, id, Access{Actor: "sec", Purpose: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for e, err := range rec.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}
