// Package streamtest has the test receivers of the audit stream: a TLS
// webhook endpoint checking signatures and a TLS syslog listener parsing
// octet-counted RFC 5424 frames, each able to refuse its first attempts.
package streamtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit/stream"
)

// Received collects what a test receiver accepted.
type Received struct {
	mu   sync.Mutex
	recs []broker.AuditRecord
	errs []string
}

func (r *Received) add(rec broker.AuditRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *Received) fail(format string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, format)
}

// Snapshot returns the records accepted so far, in arrival order, and
// the problems the receiver saw (bad signatures, frames or messages).
func (r *Received) Snapshot() ([]broker.AuditRecord, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.AuditRecord(nil), r.recs...), append([]string(nil), r.errs...)
}

// Webhook starts a TLS endpoint that refuses the first failFirst
// requests with 503 and records the rest after checking the signature.
func Webhook(t testing.TB, secret []byte, failFirst int) (*httptest.Server, *Received) {
	got := &Received{}
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := stream.VerifySignature(secret, body, r.Header.Get(stream.SignatureHeader), time.Now(), 5*time.Minute); err != nil {
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

// Syslog starts a TLS syslog listener on loopback that drops the
// first failFirst connections before the handshake, then reads
// octet-counted RFC 5424 frames until the sender closes and closes in
// turn.
func Syslog(t testing.TB, cert tls.Certificate, failFirst int) (string, *Received) {
	return syslog(t, cert, failFirst, 0)
}

// SyslogCutting starts a TLS syslog listener whose first cutFirst
// connections keep only the first frame and then reset the connection
// (an abortive close, as a crashing server's kernel sends for unread
// data); later connections behave as Syslog's.
func SyslogCutting(t testing.TB, cert tls.Certificate, cutFirst int) (string, *Received) {
	return syslog(t, cert, 0, cutFirst)
}

func syslog(t testing.TB, cert tls.Certificate, failFirst, cutFirst int) (string, *Received) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := &Received{}
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
			cut := n <= failFirst+cutFirst
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
					rec, err := ParseSyslog(msg)
					if err != nil {
						got.fail("message: " + err.Error())
						return
					}
					got.add(rec)
					if cut {
						raw := c.(*tls.Conn).NetConn()
						if tc, ok := raw.(*net.TCPConn); ok {
							_ = tc.SetLinger(0)
						}
						raw.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), got
}

// ParseSyslog parses an RFC 5424 message as the broker writes it and
// checks that its structured data agrees with its JSON MSG.
func ParseSyslog(msg []byte) (broker.AuditRecord, error) {
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
