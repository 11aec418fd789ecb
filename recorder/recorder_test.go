package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// writeShellSession records a small interactive SSH session.
func writeShellSession(t testing.TB, w *Writer) {
	t.Helper()
	steps := []error{
		w.Record(event.Event{Kind: event.KindSSHChannel, Channel: 1, Op: "session"}),
		w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "pty-req", Name: "xterm", Cols: 100, Rows: 30}),
		w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "env", Name: "LD_PRELOAD", Text: "x.so", Denied: true}),
		w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "shell"}),
		w.Output(1, []byte("alice@db:~$ ")),
		w.Input(1, []byte("l")), w.Output(1, []byte("l")),
		w.Input(1, []byte("s")), w.Output(1, []byte("s")),
		w.Input(1, []byte("\r")), w.Output(1, []byte("\r\nsecret.txt\r\nalice@db:~$ ")),
		w.Resize(1, 120, 40),
		w.Input(1, []byte("sudo true\r")), w.Output(1, []byte("sudo true\r\n[sudo] password for alice: ")),
		w.Input(1, []byte("hunter2\r")), w.Output(1, []byte("\r\nalice@db:~$ ")),
		w.Record(event.Event{Kind: event.KindSSHChannel, Channel: 2, Op: "session"}),
		w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 2, Op: "exec", Text: "uptime"}),
		w.Output(2, []byte("up 3 days\n")),
		w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 2, Op: "exit-status", N: 0}),
		w.Record(event.Event{Kind: event.KindFile, Channel: 3, Op: "write", Text: "/etc/motd", N: 12}),
		w.Query("SELECT 1"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

func TestSessionRoundTripLocal(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, err := r.Start(ctx, testHeader("ses_roundtrip"))
	if err != nil {
		t.Fatal(err)
	}
	if s := env.session("ses_roundtrip"); s.State != broker.SessionLive || s.User != "alice" {
		t.Fatalf("index at start: %+v", s)
	}
	writeShellSession(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Output(1, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	drain(t, r)

	// The index is final and searchable; the password is not indexed.
	s := env.session("ses_roundtrip")
	if s.State != broker.SessionClosed || s.ManifestHash == "" || s.EndedAt.IsZero() || s.Statements != 1 {
		t.Fatalf("index after close: %+v", s)
	}
	for _, want := range []string{"alice@db:~$ ls", "uptime", "/etc/motd", "SELECT $1", "sudo true"} {
		if !strings.Contains(s.Index, want) {
			t.Errorf("index lacks %q:\n%s", want, s.Index)
		}
	}
	if strings.Contains(s.Index, "hunter2") {
		t.Errorf("index holds an unechoed password:\n%s", s.Index)
	}

	// The manifest hash is in the audit log.
	recs := env.auditRecords("session.recorded")
	if len(recs) != 1 || !bytes.Contains(recs[0].Details, []byte(s.ManifestHash)) {
		t.Fatalf("audit: %+v", recs)
	}

	rep, err := r.Verify(ctx, "ses_roundtrip")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact || rep.Verdict != "intact" || rep.ManifestHash != s.ManifestHash || rep.State != "closed" {
		t.Fatalf("verify: %+v", rep)
	}

	// Stored files are read-only and encrypted.
	ls := env.store.(*localdir.Store)
	keys, _ := ls.List(ctx, "sessions/")
	if len(keys) < 2 {
		t.Fatalf("stored keys: %v", keys)
	}
	for _, k := range keys {
		p, _ := ls.Path(k)
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o444 {
			t.Errorf("%s mode %v", k, fi.Mode())
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(k, "chunk-") && (bytes.Contains(b, []byte("secret.txt")) || bytes.Contains(b, []byte("hunter2"))) {
			t.Errorf("%s holds plaintext", k)
		}
	}
	// The spool is cleared.
	if ents, _ := os.ReadDir(filepath.Join(env.dir, "spool", "ses_roundtrip")); len(ents) != 0 {
		t.Errorf("spool not cleared: %v", ents)
	}

	// Reading is audited and gives back every event in order.
	if n := len(env.auditRecords("session.recording.read")); n != 0 {
		t.Fatalf("%d read records before reading", n)
	}
	evs := readAll(t, r, "ses_roundtrip")
	reads := env.auditRecords("session.recording.read")
	if len(reads) != 1 || reads[0].Actor != "sec" {
		t.Fatalf("read audit: %+v", reads)
	}
	if evs[0].Kind != event.KindStart || evs[len(evs)-1].Kind != event.KindEnd || evs[len(evs)-1].Op != "closed" {
		t.Fatalf("first/last events: %+v / %+v", evs[0], evs[len(evs)-1])
	}
	var out bytes.Buffer
	for _, e := range evs {
		if e.Kind == event.KindOutput && e.Channel == 1 {
			out.Write(e.Data)
		}
	}
	if !strings.Contains(out.String(), "secret.txt") {
		t.Fatalf("output: %q", out.String())
	}
	var denied bool
	for i, e := range evs {
		if i > 0 && e.Offset < evs[i-1].Offset {
			t.Fatalf("offsets go backwards at %d", i)
		}
		denied = denied || e.Denied && e.Name == "LD_PRELOAD"
	}
	if !denied {
		t.Fatal("denied env request not recorded")
	}
}

func TestReadRequiresIdentityAndAudit(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_read"))
	w.Output(1, []byte("x"))
	w.Close()
	drain(t, r)
	if _, err := r.Open(ctx, "ses_read", Access{}); err == nil {
		t.Fatal("opened without an identity")
	}
	noAudit := newEnv(t, env.store)
	noAudit.signer, noAudit.keys = env.signer, env.keys
	r2 := noAudit.recorder(func(c *Config) { c.Audit = nil })
	if _, err := r2.Open(ctx, "ses_read", Access{Actor: "sec"}); err == nil {
		t.Fatal("opened without an audit log")
	}
}

func TestExportJSONL(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_jsonl"))
	writeShellSession(t, w)
	w.Terminate("sec-admin", "grant revoked")
	drain(t, r)
	rec, err := r.Open(ctx, "ses_jsonl", Access{Actor: "sec", Purpose: "export jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rec.ExportJSONL(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var head jsonlHeader
	if err := json.Unmarshal([]byte(lines[0]), &head); err != nil || head.Header.SessionID != "ses_jsonl" ||
		head.State != "terminated" || head.ManifestHash != rec.ManifestHash() {
		t.Fatalf("header line %s: %v", lines[0], err)
	}
	var last event.Event
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.Kind != event.KindEnd || last.Op != "terminated" || last.Name != "sec-admin" || last.Text != "grant revoked" {
		t.Fatalf("last event: %+v", last)
	}
	if s := env.session("ses_jsonl"); s.State != broker.SessionTerminated || !strings.Contains(s.EndReason, "grant revoked") {
		t.Fatalf("index: %+v", s)
	}
}

// TestChunkClosesOnTime proves an event is fsynced into the spool about a
// second after it was written, without Flush or Close.
func TestChunkClosesOnTime(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_time"))
	defer w.Close()
	w.Output(1, []byte("one"))
	path := filepath.Join(env.dir, "spool", "ses_time", "chunk-000001")
	start := time.Now()
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("no chunk spooled 3s after the first event")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Fatalf("chunk closed after %v, before its second was up", d)
	}
}

// TestChunkClosesOnSize proves a chunk closes at ChunkSize: 2.5 chunks'
// worth written at once (well within a second) land in chunks of about
// the default ChunkSize.
func TestChunkClosesOnSize(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_size"))
	defer w.Close()
	p := bytes.Repeat([]byte("x"), 32<<10)
	for range 5 * defaultChunkSize / 2 / len(p) {
		if err := w.Output(1, p); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(env.dir, "spool", "ses_size")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, e1 := os.Stat(filepath.Join(dir, "chunk-000001"))
		_, e2 := os.Stat(filepath.Join(dir, "chunk-000002"))
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("2.5 chunks' worth did not close two chunks")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dir, "chunk-000001"))
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := chunk.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size < defaultChunkSize || f.Size > defaultChunkSize+40<<10 {
		t.Fatalf("chunk 1 holds %d bytes of events, want about %d", f.Size, defaultChunkSize)
	}
	// Repeated bytes compress: the stored chunk is far smaller.
	if f.Codec != chunk.CodecS2 || len(b) > 64<<10 {
		t.Fatalf("chunk 1 is stored as %d bytes with codec %s", len(b), f.Codec)
	}
}

func TestStartRejects(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	bad := testHeader("../x")
	if _, err := r.Start(ctx, bad); err == nil {
		t.Fatal("accepted a path as session id")
	}
	noProto := testHeader("ses_np")
	noProto.Protocol = ""
	if _, err := r.Start(ctx, noProto); err == nil {
		t.Fatal("accepted a header without protocol")
	}
	w, err := r.Start(ctx, testHeader("ses_dup"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := r.Start(ctx, testHeader("ses_dup")); err == nil {
		t.Fatal("started the same session twice")
	}
}

func TestWriterAppendAllocs(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_allocs"))
	defer w.Close()
	p := make([]byte, 256)
	// Warm up: let both chunk buffers exist.
	for range 20000 {
		w.Output(1, p)
	}
	if a := testing.AllocsPerRun(5000, func() { w.Output(1, p) }); a > 0.01 {
		t.Errorf("Output allocates %.3f times per call", a)
	}
	if a := testing.AllocsPerRun(5000, func() { w.Query("SELECT abalance FROM pgbench_accounts WHERE aid = 1") }); a > 0.01 {
		t.Errorf("Query allocates %.3f times per call", a)
	}
}

func TestManifestSignedByBroker(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_sig"))
	w.Output(1, []byte("x"))
	w.Close()
	drain(t, r)
	loc, err := r.locate(ctx, "ses_sig")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loc.signed.Verify(env.signer.Public()); err != nil {
		t.Fatal(err)
	}
	m := loc.signed.Manifest
	if m.State != manifest.StateClosed || len(m.Chunks) != 1 || m.Key.Wrapper != "local" || m.Cipher != "AES-256-GCM" ||
		m.Retention.Until.Before(m.StartedAt.Add(DefaultRetention-time.Second)) || m.Chunks[0].Prev != m.HeaderHash {
		t.Fatalf("manifest: %+v", m)
	}
}

// TestCloseEndsLiveSessions shuts a Recorder down mid-session: the session
// ends as terminated by the broker, and the next Recorder stores it.
func TestCloseEndsLiveSessions(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r, err := New(ctx, env.config())
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.Start(ctx, testHeader("ses_shutdown"))
	w.Output(1, []byte("in flight"))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Output(1, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after shutdown: %v", err)
	}
	if _, err := r.Start(ctx, testHeader("ses_after")); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after shutdown: %v", err)
	}
	r2 := env.recorder()
	drain(t, r2)
	rep, err := r2.Verify(ctx, "ses_shutdown")
	if err != nil || !rep.Intact || rep.State != "terminated" {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if s := env.session("ses_shutdown"); s.State != broker.SessionTerminated || !strings.Contains(s.EndReason, "shutting down") {
		t.Fatalf("index: %+v", s)
	}
	var out bytes.Buffer
	for _, e := range readAll(t, r2, "ses_shutdown") {
		out.Write(e.Data)
	}
	if out.String() != "in flight" {
		t.Fatalf("read %q", out.String())
	}
}
