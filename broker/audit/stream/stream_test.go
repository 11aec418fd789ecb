package stream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/audit/stream"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// received collects what a test receiver accepted.
type received struct {
	mu   sync.Mutex
	recs []broker.AuditRecord
	errs []string
}

func (r *received) add(rec broker.AuditRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *received) fail(format string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, format)
}

func (r *received) snapshot() ([]broker.AuditRecord, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.AuditRecord(nil), r.recs...), append([]string(nil), r.errs...)
}

// VerifySignature checks a SignatureHeader value as a receiver would.
func verifySignature(secret, body []byte, header string, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("no timestamp")
	}
	if d := now.Sub(time.Unix(t, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("stale timestamp")
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errors.New("bad signature")
	}
	return nil
}

// webhookReceiver is a TLS endpoint that refuses the first failFirst
// requests with 503 and records the rest after checking the signature.
func webhookReceiver(t *testing.T, secret []byte, failFirst int) (*httptest.Server, *received) {
	got := &received{}
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifySignature(secret, body, r.Header.Get(stream.SignatureHeader), time.Now()); err != nil {
			got.fail("signature: " + err.Error())
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n <= failFirst {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var rec broker.AuditRecord
		if err := json.Unmarshal(body, &rec); err != nil {
			got.fail("body: " + err.Error())
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if r.Header.Get(stream.SeqHeader) != strconv.FormatInt(rec.Seq, 10) {
			got.fail("seq header does not match the body")
		}
		got.add(rec)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// syslogReceiver is a TLS syslog listener on loopback that drops the
// first failFirst connections before the handshake, then reads
// octet-counted RFC 5424 frames until the sender closes and closes in
// turn.
func syslogReceiver(t *testing.T, cert tls.Certificate, failFirst int) (string, *received) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := &received{}
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n <= failFirst {
				c.(*tls.Conn).NetConn().Close()
				continue
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					msg, err := stream.ReadFrame(br, 1<<20)
					if err == io.EOF {
						return
					}
					if err != nil {
						got.fail("frame: " + err.Error())
						return
					}
					rec, err := parseSyslog(msg)
					if err != nil {
						got.fail("message: " + err.Error())
						return
					}
					got.add(rec)
				}
			}()
		}
	}()
	return ln.Addr().String(), got
}

// parseSyslog parses an RFC 5424 message as the broker writes it and
// checks that its structured data agrees with its JSON MSG.
func parseSyslog(msg []byte) (broker.AuditRecord, error) {
	var rec broker.AuditRecord
	// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
	f := bytes.SplitN(msg, []byte(" "), 7)
	if len(f) != 7 || !bytes.HasPrefix(f[0], []byte("<")) || !bytes.HasSuffix(f[0], []byte(">1")) {
		return rec, errors.New("bad header")
	}
	if _, err := time.Parse(time.RFC3339Nano, string(f[1])); err != nil {
		return rec, errors.New("bad timestamp")
	}
	if string(f[3]) != "custos" {
		return rec, errors.New("bad app name " + string(f[3]))
	}
	rest := f[6]
	if !bytes.HasPrefix(rest, []byte("["+stream.SDID+" ")) {
		return rec, errors.New("no structured data")
	}
	end := bytes.Index(rest, []byte("] \xef\xbb\xbf"))
	if end < 0 {
		return rec, errors.New("no BOM-prefixed MSG")
	}
	sd, body := string(rest[:end]), rest[end+5:]
	if err := json.Unmarshal(body, &rec); err != nil {
		return rec, err
	}
	if string(f[5]) != rec.Action {
		return rec, errors.New("MSGID is not the action")
	}
	for _, want := range []string{`seq="` + strconv.FormatInt(rec.Seq, 10) + `"`, `hash="` + rec.Hash + `"`, `prev_hash="` + rec.PrevHash + `"`} {
		if !strings.Contains(sd, want) {
			return rec, errors.New("structured data lacks " + want)
		}
	}
	return rec, nil
}

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
	hook, hookGot := webhookReceiver(t, secret, 3)
	roots := hook.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	sysAddr, sysGot := syslogReceiver(t, hook.TLS.Certificates[0], 2)
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
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			h, _ := hookGot.snapshot()
			s, _ := sysGot.snapshot()
			if len(h) >= n && len(s) >= n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		h, _ := hookGot.snapshot()
		s, _ := sysGot.snapshot()
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

	for name, got := range map[string]*received{"webhook": hookGot, "syslog": sysGot} {
		recs, errs := got.snapshot()
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
	hook, got := webhookReceiver(t, []byte("receiver-secret"), 0)
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
	recs, errs := got.snapshot()
	if len(recs) != 0 || len(errs) < 2 {
		t.Errorf("receiver accepted %d records with %d refusals; want none accepted and retries refused", len(recs), len(errs))
	}
	if cur, _ := stream.ReadCursor(cursor); cur != 0 {
		t.Errorf("cursor advanced to %d past a refused record", cur)
	}
}
