package stream_test

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit/stream"
	"github.com/custos-pam/custos/broker/audit/stream/streamtest"
)

// TestSyslogMessageRoundTrip: a record with characters RFC 5424 escapes
// or forbids in header fields frames, parses and keeps its hash.
func TestSyslogMessageRoundTrip(t *testing.T) {
	r := broker.AuditRecord{Seq: 7, ID: `aud_"x]\`, Time: time.Date(2026, 3, 2, 9, 14, 7, 123456789, time.UTC),
		Actor: "alice", Action: "grant.approved", Target: "db] \"x\"", Outcome: broker.OutcomeDenied,
		Details: []byte(`{"note":"ünïcode ] \" \\"}`), PrevHash: "00ff"}
	r.Hash = r.ComputeHash()
	msg, err := stream.NewSyslog("127.0.0.1:1", nil, "host name", "", time.Second).Message(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, []byte("<109>1 2026-03-02T09:14:07.123456Z host_name custos - grant.approved [custos@32473 seq=\"7\" id=\"aud_\\\"x\\]\\\\\"")) {
		t.Fatalf("header: %q", msg)
	}
	framed := append([]byte(strconv.Itoa(len(msg))+" "), msg...)
	br := bufio.NewReader(bytes.NewReader(append(framed, framed...)))
	for range 2 {
		got, err := stream.ReadFrame(br, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := streamtest.ParseSyslog(got)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Hash != r.Hash || rec.ComputeHash() != r.Hash {
			t.Fatalf("parsed record does not keep its hash: %+v", rec)
		}
	}
	if _, err := stream.ReadFrame(br, 1<<20); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// FuzzReadFrame: no input makes the frame reader panic or return more
// than the limit.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("5 hello3 abc"))
	f.Add([]byte("99999999999 x"))
	f.Add([]byte(" 1 x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		for range 100 {
			msg, err := stream.ReadFrame(br, 1024)
			if err != nil {
				return
			}
			if len(msg) > 1024 {
				t.Fatalf("frame of %d bytes over the limit", len(msg))
			}
		}
	})
}
