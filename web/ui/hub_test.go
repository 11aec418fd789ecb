package webui

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// TestHubEmulatesOnlyForWatchers: a terminal session nobody watches costs
// the hub nothing (no emulator is built however much it prints); a
// watcher who arrives late gets the screen as it is now, built from the
// session's recent output at its current size; each watcher gets its own.
func TestHubEmulatesOnlyForWatchers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	objects, err := localdir.New(filepath.Join(dir, "recordings"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := manifest.LoadSigner(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keywrap.LoadLocal(filepath.Join(dir, "wrap.key"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(ctx, recorder.Config{SpoolDir: filepath.Join(dir, "spool"), Store: objects, Signer: signer, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	hub := NewHub(rec)

	w, err := rec.Start(ctx, event.Header{SessionID: "ses_hub", GrantID: "grt_1", User: "alice", Target: "demo-ssh", Role: "ops", Protocol: "ssh"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "pty-req", Cols: 80, Rows: 24}); err != nil {
		t.Fatal(err)
	}
	for i := range 50000 {
		if err := w.Output(1, fmt.Appendf(nil, "line %05d\r\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Resize(1, 100, 30); err != nil {
		t.Fatal(err)
	}
	if err := w.Output(1, []byte("$ whoami")); err != nil {
		t.Fatal(err)
	}
	if !hub.Has("ses_hub") {
		t.Fatal("running session not live")
	}
	if n := hub.screens.Load(); n != 0 {
		t.Fatalf("%d emulators built while nobody watched", n)
	}

	sub, v, ok := hub.watch("ses_hub")
	if !ok {
		t.Fatal("watch failed")
	}
	defer sub.Cancel()
	if n := hub.screens.Load(); n != 1 {
		t.Fatalf("%d emulators built for one watcher", n)
	}
	lines := strings.Split(strings.TrimRight(v.text, "\n"), "\n")
	if v.cols != 100 || v.rows != 30 || len(lines) < 2 ||
		!strings.HasPrefix(lines[len(lines)-1], "$ whoami") || !strings.HasPrefix(lines[len(lines)-2], "line 49999") {
		t.Fatalf("late watcher's %dx%d screen:\n%s", v.cols, v.rows, v.text)
	}
	if len(v.snapshot) == 0 {
		t.Fatal("no screen snapshot")
	}
	// Events recorded after the watch reach the watcher.
	if err := w.Output(1, []byte("\r\nalice")); err != nil {
		t.Fatal(err)
	}
	if e := <-sub.Events(); string(e.Data) != "\r\nalice" {
		t.Fatalf("first event after the screen: %+v", e)
	}
	sub2, _, _ := hub.watch("ses_hub")
	sub2.Cancel()
	if n := hub.screens.Load(); n != 2 {
		t.Fatalf("%d emulators for two watchers", n)
	}
}
