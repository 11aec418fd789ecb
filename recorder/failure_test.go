package recorder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/store"
)

// blockChunk makes the spool unable to store chunk seq of a session: a
// directory sits where the chunk file must go.
func blockChunk(t *testing.T, env *testEnv, id string, seq int) string {
	t.Helper()
	p := filepath.Join(env.dir, "spool", id, "chunk-00000"+string(rune('0'+seq)))
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitClosed(t *testing.T, ch <-chan struct{}, within time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(within):
		t.Fatalf("not closed within %v", within)
	}
}

func TestSpoolFailureFailsClosed(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, err := r.Start(ctx, testHeader("ses_spoolfail"))
	if err != nil {
		t.Fatal(err)
	}
	w.Output(1, []byte("before"))
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	blocker := blockChunk(t, env, "ses_spoolfail", 2)
	w.Output(1, []byte("during"))
	waitClosed(t, w.Done(), 3*time.Second)
	if err := w.Output(1, []byte("after")); !errors.Is(err, ErrRecordingFailed) {
		t.Fatalf("write after failure: %v", err)
	}
	if !errors.Is(w.Err(), ErrRecordingFailed) {
		t.Fatalf("Err = %v", w.Err())
	}
	if recs := env.waitAudit("session.recording.failed", 1); len(recs) != 1 || recs[0].Outcome != broker.OutcomeError {
		t.Fatalf("audit: %+v", recs)
	}
	os.Remove(blocker)
	if err := w.Close(); !errors.Is(err, ErrRecordingFailed) {
		t.Fatalf("Close = %v", err)
	}
	drain(t, r)
	// What was spooled is stored, chained and marked incomplete.
	rep, err := r.Verify(ctx, "ses_spoolfail")
	if err != nil || !rep.Intact || rep.State != "interrupted" {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if s := env.session("ses_spoolfail"); s.State != broker.SessionInterrupted || !strings.Contains(s.EndReason, "incomplete") {
		t.Fatalf("index: %+v", s)
	}
}

func TestSpoolFailureFailOpen(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	h := testHeader("ses_failopen")
	h.Policy.FailOpen = true
	w, err := r.Start(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	w.Output(1, []byte("before"))
	w.Flush(ctx)
	blocker := blockChunk(t, env, "ses_failopen", 2)
	w.Output(1, []byte("during"))
	w.Flush(ctx)
	recs := env.waitAudit("session.record_fail_open", 1)
	if len(recs) != 1 || recs[0].Target != "prod-db" {
		t.Fatalf("fail-open use not audited: %+v", recs)
	}
	select {
	case <-w.Done():
		t.Fatal("a fail-open session was told to end")
	default:
	}
	os.Remove(blocker)
	if err := w.Output(1, []byte("after")); err != nil {
		t.Fatalf("fail-open write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	var out bytes.Buffer
	var noted bool
	for _, e := range readAll(t, r, "ses_failopen") {
		out.Write(e.Data)
		noted = noted || e.Kind == event.KindNote && e.Op == "fail_open"
	}
	if !strings.Contains(out.String(), "before") || !strings.Contains(out.String(), "after") || !noted {
		t.Fatalf("recording: %q, fail_open note %v", out.String(), noted)
	}
}

// flakyStore fails every write while down is set.
type flakyStore struct {
	ObjectStore
	down atomic.Bool
}

var errFlaky = errors.New("connection refused")

func (f *flakyStore) Put(ctx context.Context, key string, b []byte, o store.PutOptions) (string, error) {
	if f.down.Load() {
		return "", errFlaky
	}
	return f.ObjectStore.Put(ctx, key, b, o)
}

func (f *flakyStore) Versions(ctx context.Context, prefix string) ([]store.Version, error) {
	if f.down.Load() {
		return nil, errFlaky
	}
	return f.ObjectStore.Versions(ctx, prefix)
}

func TestStoreOutagePastAllowanceFailsClosed(t *testing.T) {
	ctx := context.Background()
	base := newEnv(t, nil)
	flaky := &flakyStore{ObjectStore: base.store}
	env := newEnv(t, flaky)
	r := env.recorder(func(c *Config) { c.MaxUploadOutage = 300 * time.Millisecond })
	closed, err := r.Start(ctx, testHeader("ses_out_closed"))
	if err != nil {
		t.Fatal(err)
	}
	flaky.down.Store(true)
	for i := 0; ; i++ {
		closed.Output(1, []byte("tick\n"))
		select {
		case <-closed.Done():
		case <-time.After(100 * time.Millisecond):
			if i > 100 {
				t.Fatal("session not failed 10s into an outage allowed 300ms")
			}
			continue
		}
		break
	}
	if !errors.Is(closed.Err(), ErrStoreUnavailable) {
		t.Fatalf("Err = %v", closed.Err())
	}
	if got := closed.FailureReason(); got != "object store unreachable" {
		t.Fatalf("FailureReason = %q", got)
	}
	if _, err := r.Start(ctx, testHeader("ses_out_new")); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("new fail-closed session during outage: %v", err)
	}
	h := testHeader("ses_out_open")
	h.Policy.FailOpen = true
	open, err := r.Start(ctx, h)
	if err != nil {
		t.Fatalf("fail-open session during outage: %v", err)
	}
	if recs := env.waitAudit("session.record_fail_open", 1); len(recs) != 1 {
		t.Fatalf("fail-open start not audited: %+v", recs)
	}
	open.Output(1, []byte("kept in the spool"))

	flaky.down.Store(false)
	closed.Terminate("broker", "recording store unavailable")
	open.Close()
	drain(t, r)
	if err := r.Ready(); err != nil {
		t.Fatalf("still not ready after the store returned: %v", err)
	}
	// The failed session ended by its recording's failure, not by anyone:
	// it is stored as interrupted; the fail-open one closed normally.
	for id, state := range map[string]string{"ses_out_closed": stateInterrupted, "ses_out_open": stateClosed} {
		rep, err := r.Verify(ctx, id)
		if err != nil || !rep.Intact || rep.State != state {
			t.Fatalf("%s: %+v, %v; want intact and %s", id, rep, err, state)
		}
	}
	var got bytes.Buffer
	for _, e := range readAll(t, r, "ses_out_open") {
		got.Write(e.Data)
	}
	if !strings.Contains(got.String(), "kept in the spool") {
		t.Fatalf("fail-open data lost: %q", got.String())
	}
}

// TestIndexShowsEndBeforeUpload: a session that ended during a store
// outage is listed as ended at once, and gets its manifest hash once
// stored.
func TestIndexShowsEndBeforeUpload(t *testing.T) {
	ctx := context.Background()
	base := newEnv(t, nil)
	flaky := &flakyStore{ObjectStore: base.store}
	env := newEnv(t, flaky)
	r := env.recorder()
	flaky.down.Store(true)
	w, _ := r.Start(ctx, testHeader("ses_early"))
	w.Output(1, []byte("x"))
	w.Close()
	deadline := time.Now().Add(5 * time.Second)
	for env.session("ses_early").State != broker.SessionClosed {
		if time.Now().After(deadline) {
			t.Fatalf("index still says %s after Close", env.session("ses_early").State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := env.session("ses_early"); s.ManifestHash != "" || s.EndedAt.IsZero() {
		t.Fatalf("before upload: %+v", s)
	}
	flaky.down.Store(false)
	drain(t, r)
	if s := env.session("ses_early"); s.ManifestHash == "" || s.State != broker.SessionClosed {
		t.Fatalf("after upload: %+v", s)
	}
}

// A session that has ended but whose recording is still on its way to the
// store verifies as pending, not as a missing recording (a false tamper
// alarm the soak met when it verified sessions right after they ended),
// and as intact once stored.
func TestVerifyEndedSessionBeforeUpload(t *testing.T) {
	ctx := context.Background()
	base := newEnv(t, nil)
	flaky := &putDownStore{ObjectStore: base.store}
	env := newEnv(t, flaky)
	r := env.recorder()
	flaky.down.Store(true)
	w, _ := r.Start(ctx, testHeader("ses_storing"))
	w.Output(1, []byte("x"))
	w.Close()
	deadline := time.Now().Add(5 * time.Second)
	for env.session("ses_storing").State != broker.SessionClosed {
		if time.Now().After(deadline) {
			t.Fatalf("index still says %s after Close", env.session("ses_storing").State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep, err := r.Verify(ctx, "ses_storing")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intact || rep.State != "pending" || strings.Contains(rep.Verdict, "missing") {
		t.Fatalf("ended, not yet stored: %+v", rep)
	}
	flaky.down.Store(false)
	drain(t, r)
	if rep, err := r.Verify(ctx, "ses_storing"); err != nil || !rep.Intact {
		t.Fatalf("after upload: %+v, %v", rep, err)
	}
}

// putDownStore refuses writes while down is set; reads work.
type putDownStore struct {
	ObjectStore
	down atomic.Bool
}

func (f *putDownStore) Put(ctx context.Context, key string, b []byte, o store.PutOptions) (string, error) {
	if f.down.Load() {
		return "", errFlaky
	}
	return f.ObjectStore.Put(ctx, key, b, o)
}
