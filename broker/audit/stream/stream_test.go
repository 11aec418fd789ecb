package stream_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/audit/stream"
	"github.com/custos-pam/custos/broker/audit/stream/streamtest"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// TestStreamDeliversInOrderAcrossRestart appends records to a real store
// while a webhook and a syslog receiver that refuse their first attempts
// are streamed to, stops the streamers (a broker restart), appends more,
// and starts new ones on the same cursors: each receiver ends with every
// record, in seq order, each once, with intact chain hashes and (webhook)
// valid signatures.
func TestStreamDeliversInOrderAcrossRestart(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := audit.NewLog(st)
	appendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			if _, err := log.Append(t.Context(), audit.Entry{Actor: "alice", Action: "grant.requested",
				Target: "db-" + strconv.Itoa(i), Outcome: broker.OutcomeSuccess, Details: map[string]int{"i": i}}); err != nil {
				t.Fatal(err)
			}
		}
	}

	secret := []byte("webhook-test-secret")
	hook, hookGot := streamtest.Webhook(t, secret, 3)
	roots := hook.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	sysAddr, sysGot := streamtest.Syslog(t, hook.TLS.Certificates[0], 2)
	dir := t.TempDir()

	start := func() (context.CancelFunc, *sync.WaitGroup) {
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for name, sink := range map[string]stream.Sink{
			"webhook": stream.NewWebhook(hook.URL+"/audit", secret, &tls.Config{RootCAs: roots}, 5*time.Second),
			"syslog":  stream.NewSyslog(sysAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, "broker-1", "", 5*time.Second),
		} {
			s, err := stream.New(stream.Options{Name: name, Store: st, Sink: sink, Cursor: filepath.Join(dir, name+".cursor"),
				Poll: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Batch: 3})
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() { s.Run(ctx) })
		}
		return cancel, &wg
	}
	// waitFor waits until both receivers hold n records and both streams
	// have saved a cursor of n: a receiver can hold a batch before its
	// streamer has seen it confirmed (syslog's orderly close), and a
	// streamer stopped then sends that batch again after its restart.
	cursorsAt := func(n int) bool {
		for _, name := range []string{"webhook", "syslog"} {
			if cur, err := stream.ReadCursor(filepath.Join(dir, name+".cursor")); err != nil || cur < int64(n) {
				return false
			}
		}
		return true
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			h, _ := hookGot.Snapshot()
			s, _ := sysGot.Snapshot()
			if len(h) >= n && len(s) >= n && cursorsAt(n) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		h, _ := hookGot.Snapshot()
		s, _ := sysGot.Snapshot()
		t.Fatalf("receivers got %d (webhook) and %d (syslog) records, want %d", len(h), len(s), n)
	}

	appendN(0, 4)
	cancel, wg := start()
	appendN(4, 3) // appended while streaming
	waitFor(7)
	cancel()
	wg.Wait()
	appendN(7, 5) // appended while no streamer runs
	cancel, wg = start()
	waitFor(12)
	cancel()
	wg.Wait()

	for name, got := range map[string]*streamtest.Received{"webhook": hookGot, "syslog": sysGot} {
		recs, errs := got.Snapshot()
		if len(errs) > 0 {
			t.Errorf("%s receiver: %v", name, errs)
		}
		var chain audit.Chain
		for i, r := range recs {
			if r.Seq != int64(i+1) {
				t.Fatalf("%s: record %d has seq %d (duplicate or out of order)", name, i, r.Seq)
			}
			if !chain.Next(r) {
				t.Fatalf("%s: chain broken: %+v", name, chain.Report())
			}
		}
		if len(recs) != 12 {
			t.Errorf("%s: %d records, want 12", name, len(recs))
		}
		if cur, err := stream.ReadCursor(filepath.Join(dir, name+".cursor")); err != nil || cur != 12 {
			t.Errorf("%s cursor = %d, %v; want 12", name, cur, err)
		}
	}
}

// TestWebhookRefusedSignature: a receiver with another secret refuses
// every request, and the streamer keeps the record instead of skipping it.
func TestWebhookRefusedSignature(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := audit.NewLog(st).Append(t.Context(), audit.Entry{Actor: "a", Action: "x", Outcome: broker.OutcomeSuccess}); err != nil {
		t.Fatal(err)
	}
	hook, got := streamtest.Webhook(t, []byte("receiver-secret"), 0)
	roots := hook.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	cursor := filepath.Join(t.TempDir(), "webhook.cursor")
	s, err := stream.New(stream.Options{Name: "webhook", Store: st, Cursor: cursor, MinBackoff: 10 * time.Millisecond,
		Sink: stream.NewWebhook(hook.URL, []byte("wrong-secret"), &tls.Config{RootCAs: roots}, time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	s.Run(ctx)
	recs, errs := got.Snapshot()
	if len(recs) != 0 || len(errs) < 2 {
		t.Errorf("receiver accepted %d records with %d refusals; want none accepted and retries refused", len(recs), len(errs))
	}
	if cur, _ := stream.ReadCursor(cursor); cur != 0 {
		t.Errorf("cursor advanced to %d past a refused record", cur)
	}
}

// TestSyslogCutMidBatch: a server that resets the connection after the
// first record of a batch, instead of closing it after the broker's
// close, has not accepted the batch; it is sent again, so the receiver
// sees a record twice but never misses one.
func TestSyslogCutMidBatch(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i := range 6 {
		if _, err := audit.NewLog(st).Append(t.Context(), audit.Entry{Actor: "a", Action: "x" + strconv.Itoa(i), Outcome: broker.OutcomeSuccess}); err != nil {
			t.Fatal(err)
		}
	}
	hook, _ := streamtest.Webhook(t, []byte("unused"), 0) // for its certificate
	roots := hook.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	addr, got := streamtest.SyslogCutting(t, hook.TLS.Certificates[0], 2)
	cursor := filepath.Join(t.TempDir(), "syslog.cursor")
	s, err := stream.New(stream.Options{Name: "syslog", Store: st, Cursor: cursor, Poll: 10 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Batch: 3,
		Sink: stream.NewSyslog(addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, "h", "", time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cur, _ := stream.ReadCursor(cursor); cur == 6 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	recs, problems := got.Snapshot()
	var seqs []int64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	// Two cut connections each kept seq 1; then 1, 2, 3 and 4, 5, 6.
	want := []int64{1, 1, 1, 2, 3, 4, 5, 6}
	if len(problems) > 0 || !slices.Equal(seqs, want) {
		t.Fatalf("receiver got seqs %v (problems %v), want %v", seqs, problems, want)
	}
}
