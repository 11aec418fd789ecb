package identity

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// cheapParams keep tests fast; VerifyPassword reads parameters from the
// PHC string, so the code path is the production one.
var cheapParams = passwordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func cheapHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := hashPassword(pw, cheapParams)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func auditRecords(t testing.TB, s broker.Store, actionPrefix string) []broker.AuditRecord {
	t.Helper()
	var out []broker.AuditRecord
	err := s.View(context.Background(), func(tx broker.Tx) error {
		var err error
		out, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: actionPrefix})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func verifyChain(t testing.TB, s broker.Store) {
	t.Helper()
	rep, err := audit.Verify(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("audit chain broken: %+v", rep)
	}
}
