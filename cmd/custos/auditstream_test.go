package main

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/audit/stream/streamtest"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// TestAuditStreamEndToEnd runs the real broker with a webhook and a syslog
// destination whose receivers refuse their first attempts, through a
// graceful restart and a crash (SIGKILL): each receiver ends with every
// record of the run, in seq order, never skipping one (a record may come
// twice only right after the crash: at least once), each with the hash
// the store holds, and every webhook request correctly signed.
func TestAuditStreamEndToEnd(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("e2e-webhook-secret-0123456789")
	secretFile := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	hook, hookGot := streamtest.Webhook(t, secret, 3)
	sysAddr, sysGot := streamtest.Syslog(t, hook.TLS.Certificates[0], 2)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "custos.db")
	// The store section is followed by the audit section on lines of
	// their own.
	store := fmt.Sprintf(`{driver: sqlite, path: %q}
audit:
  stream:
    webhook: {url: %q, secret: "file:%s", ca_cert: %q, max_backoff: 200ms}
    syslog: {address: %q, ca_cert: %q, server_name: 127.0.0.1, max_backoff: 200ms}`,
		dbPath, hook.URL+"/custos/audit", secretFile, caFile, sysAddr, caFile)
	b := newBroker(t, store)
	b.login("alice")

	// Graceful restart: the broker drains both streams at shutdown.
	b.stop(syscall.SIGTERM)
	b.start()
	b.login("bob")
	waitHead := func() int64 {
		t.Helper()
		st, err := sqlite.Open(t.Context(), dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var recs []broker.AuditRecord
		if err := st.View(t.Context(), func(tx broker.Tx) error {
			var err error
			recs, err = tx.ListAudit(broker.AuditFilter{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return recs[len(recs)-1].Seq
	}
	head := waitHead()
	waitDelivered(t, hookGot, sysGot, head)

	// A crash right after more records: whatever was not delivered yet
	// is delivered after the next start.
	b.login("carol")
	b.stop(syscall.SIGKILL)
	b.start()
	b.login("sam")
	b.stop(syscall.SIGTERM)

	st, err := sqlite.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var all []broker.AuditRecord
	if err := st.View(t.Context(), func(tx broker.Tx) error {
		var err error
		all, err = tx.ListAudit(broker.AuditFilter{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if last := all[len(all)-1]; last.Action != "broker.stop" {
		t.Fatalf("last record is %s, want broker.stop", last.Action)
	}
	for name, got := range map[string]*streamtest.Received{"webhook": hookGot, "syslog": sysGot} {
		recs, problems := got.Snapshot()
		if len(problems) > 0 {
			t.Errorf("%s receiver: %v", name, problems)
		}
		var prev int64
		for i, r := range recs {
			if r.Seq < 1 || r.Seq > prev+1 || r.Seq < prev {
				t.Fatalf("%s: arrival %d is seq %d after seq %d: skipped or out of order", name, i, r.Seq, prev)
			}
			if want := all[r.Seq-1]; r.Hash != want.Hash || r.PrevHash != want.PrevHash || r.Hash != r.ComputeHash() {
				t.Fatalf("%s: seq %d arrived with hash %s, store has %s", name, r.Seq, r.Hash, want.Hash)
			}
			prev = r.Seq
		}
		if prev != int64(len(all)) {
			t.Errorf("%s: last delivered seq %d, store head %d", name, prev, len(all))
		}
		var chain audit.Chain
		seen := map[int64]bool{}
		for _, r := range recs {
			if !seen[r.Seq] && !chain.Next(r) {
				t.Fatalf("%s: delivered chain broken: %+v", name, chain.Report())
			}
			seen[r.Seq] = true
		}
		t.Logf("%s: %d deliveries of %d records", name, len(recs), len(all))
	}
}

// waitDelivered waits until both receivers hold seq head.
func waitDelivered(t *testing.T, a, b *streamtest.Received, head int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ra, _ := a.Snapshot()
		rb, _ := b.Snapshot()
		if len(ra) > 0 && len(rb) > 0 && ra[len(ra)-1].Seq >= head && rb[len(rb)-1].Seq >= head {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("receivers did not reach seq %d", head)
}
