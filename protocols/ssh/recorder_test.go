package sshproxy

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
	recpkg "github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// realRecorder is the broker's recorder over a local directory store, as
// `custos serve` runs it without S3: encrypted chunks fsynced to a spool,
// uploaded and sealed with a signed manifest.
func realRecorder(tb testing.TB) (*recpkg.Recorder, lifecycle.RecorderFunc) {
	tb.Helper()
	dir := tb.TempDir()
	signer, err := manifest.LoadSigner(filepath.Join(dir, "keys", "signing.key"))
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := keywrap.LoadLocal(filepath.Join(dir, "keys", "wrap.key"))
	if err != nil {
		tb.Fatal(err)
	}
	st, err := localdir.New(filepath.Join(dir, "recordings"))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := recpkg.New(context.Background(), recpkg.Config{
		SpoolDir: filepath.Join(dir, "spool"), Store: st, Signer: signer, Keys: keys, Audit: &lifecycletest.Audit{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r, func(ctx context.Context, h event.Header) (lifecycle.Recording, error) {
		w, err := r.Start(ctx, h)
		if err != nil {
			return nil, err
		}
		return w, nil
	}
}

// TestWithRealRecorder runs a command and an SFTP upload through the proxy
// recording with the broker's recorder, then reads the sealed recording
// back: the adapter in lifecycle.RecorderFunc is all the wiring needs.
func TestWithRealRecorder(t *testing.T) {
	r, rec := realRecorder(t)
	e := newEnvRecorder(t, rec)
	res := e.ssh(testTarget, "echo recorded-output; echo recorded-stderr >&2; exit 4")
	if res.code != 4 {
		t.Fatalf("code %d stderr %q", res.code, res.stderr)
	}
	local := filepath.Join(t.TempDir(), "f.txt")
	makeFile(t, local, 1000)
	remote := e.remoteDir() + "/f.txt"
	if res := run(t, nil, "scp", e.scpArgs(local, testTarget+"@127.0.0.1:"+remote)...); res.code != 0 {
		t.Fatalf("scp: %q", res.stderr)
	}
	// The client has exited; the proxy's session ends just after.
	lifecycletest.WaitNoSessions(t, e.proxy.Core)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := r.List(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil || len(stored) != 2 {
		t.Fatalf("stored recordings %+v %v", stored, err)
	}
	var all []string
	for _, s := range stored {
		opened, err := r.Open(ctx, s.SessionID, recpkg.Access{Actor: "sam", Purpose: "test"})
		if err != nil {
			t.Fatal(err)
		}
		h := opened.Header()
		if h.User != testUser || h.Target != testTarget || h.GrantID != e.grant.ID || h.Account != e.sshd.Login {
			t.Fatalf("header %+v", h)
		}
		for ev, err := range opened.Events(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, ev.Kind.String()+" "+ev.Op+" "+ev.Text+" "+string(ev.Data))
		}
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		"ssh_request exec echo recorded-output",
		"output   recorded-output\n",
		"stderr   recorded-stderr\n",
		"ssh_request exit-status",
		"file open " + remote,
		"file write " + remote,
		"end closed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("recording lacks %q:\n%s", want, text)
		}
	}
}
