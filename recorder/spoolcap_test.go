package recorder

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
)

// TestSpoolFull: with the store down, a session flooding output fills the
// capped spool. The event that does not fit is refused (so the proxy never
// relays it) and the session fails; every event accepted before is in the
// recording, which ends as interrupted by the recording failure. The other
// fail-closed session, quiet meanwhile, fails at once too; new ones are
// refused; a fail-open one goes on with its events dropped and ends as
// incomplete.
// Once the store returns everything is stored, the spool is empty and new
// sessions start again.
func TestSpoolFull(t *testing.T) {
	ctx := context.Background()
	base := newEnv(t, nil)
	flaky := &flakyStore{ObjectStore: base.store}
	env := newEnv(t, flaky)
	const max = 256 << 10
	r := env.recorder(func(c *Config) { c.SpoolMaxBytes = max })
	flaky.down.Store(true)

	flood, err := r.Start(ctx, testHeader("ses_flood"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := r.Start(ctx, testHeader("ses_other"))
	if err != nil {
		t.Fatal(err)
	}
	h := testHeader("ses_open")
	h.Policy.FailOpen = true
	open, err := r.Start(ctx, h)
	if err != nil {
		t.Fatal(err)
	}

	// Incompressible output, so the sealed chunks are as large as the
	// events.
	var accepted bytes.Buffer
	var floodErr error
	for i := 0; i < 1000 && floodErr == nil; i++ {
		p := make([]byte, 4096)
		rand.Read(p)
		if floodErr = flood.Output(1, p); floodErr == nil {
			accepted.Write(p)
		}
	}
	if !errors.Is(floodErr, ErrSpoolFull) || !errors.Is(floodErr, ErrRecordingFailed) {
		t.Fatalf("flooding a %d-byte spool: %d bytes accepted, then %v", max, accepted.Len(), floodErr)
	}
	<-flood.Done()
	if accepted.Len() > max || accepted.Len() < max/2 {
		t.Fatalf("%d bytes accepted into a %d-byte spool", accepted.Len(), max)
	}
	if got := flood.FailureReason(); got != "spool full" {
		t.Fatalf("FailureReason = %q", got)
	}
	select {
	case <-other.Done():
	default:
		t.Fatal("a quiet fail-closed session goes on with the spool full")
	}
	if err := other.Output(1, []byte("x")); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("another session's output with the spool full: %v", err)
	}
	if err := r.Ready(); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("Ready with the spool full: %v", err)
	}
	if _, err := r.Start(ctx, testHeader("ses_new")); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("new fail-closed session with the spool full: %v", err)
	}
	if err := open.Output(1, make([]byte, 8192)); err != nil {
		t.Fatalf("fail-open session with the spool full: %v", err)
	}

	flood.Terminate("system", "recording failed: spool full")
	other.Terminate("system", "recording failed: spool full")
	open.Close()
	flaky.down.Store(false)
	drain(t, r)
	if n := r.SpoolBytes(); n != 0 {
		t.Fatalf("spool accounts %d bytes once everything is stored", n)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("Ready once stored: %v", err)
	}
	for id, state := range map[string]string{"ses_flood": stateInterrupted, "ses_other": stateInterrupted, "ses_open": stateInterrupted} {
		rep, err := r.Verify(ctx, id)
		if err != nil || !rep.Intact || rep.State != state {
			t.Fatalf("%s: %+v, %v; want intact and %s", id, rep, err, state)
		}
	}
	var recorded bytes.Buffer
	var end string
	for _, e := range readAll(t, r, "ses_flood") {
		recorded.Write(e.Data)
		if e.Kind.String() == "end" {
			end = e.Op + " by " + e.Name + ": " + e.Text
		}
	}
	if !bytes.Equal(recorded.Bytes(), accepted.Bytes()) {
		t.Fatalf("recording holds %d bytes of output, %d were accepted", recorded.Len(), accepted.Len())
	}
	if end != "interrupted by system: recording failed: spool full" {
		t.Fatalf("end event: %q", end)
	}
	if s := env.session("ses_open"); s.State != stateInterrupted {
		t.Fatalf("fail-open session with dropped events listed as %s: %s", s.State, s.EndReason)
	}
	w, err := r.Start(ctx, testHeader("ses_after"))
	if err != nil {
		t.Fatalf("new session once the spool emptied: %v", err)
	}
	w.Close()
}
