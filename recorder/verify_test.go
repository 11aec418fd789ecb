package recorder

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/custos-pam/custos/recorder/store/localdir"
)

// threeChunkSession records a session of at least three chunks in a local
// store and returns the paths of its chunk files.
func threeChunkSession(t *testing.T, id string) (*testEnv, *Recorder, []string) {
	t.Helper()
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder(func(c *Config) { c.ChunkSize = 4 << 10 })
	w, err := r.Start(ctx, testHeader(id))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		w.Output(1, bytes.Repeat([]byte{'a' + byte(i)}, 1<<10))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	rep, err := r.Verify(ctx, id)
	if err != nil || !rep.Intact || rep.Chunks < 3 {
		t.Fatalf("before tampering: %+v, %v", rep, err)
	}
	ls := env.store.(*localdir.Store)
	keys, _ := ls.List(ctx, "sessions/")
	var paths []string
	for _, k := range keys {
		if strings.Contains(k, "/chunk-") {
			p, _ := ls.Path(k)
			paths = append(paths, p)
		}
	}
	return env, r, paths
}

// writable makes a read-only stored file writable again, as an attacker
// with file system access would.
func writable(t *testing.T, p string) {
	t.Helper()
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetectsLocalTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, chunks []string)
		check  string
	}{
		{"flipped byte", func(t *testing.T, c []string) {
			writable(t, c[1])
			b, _ := os.ReadFile(c[1])
			b[len(b)/2] ^= 0x01
			os.WriteFile(c[1], b, 0o444)
		}, "sha256"},
		{"removed chunk", func(t *testing.T, c []string) {
			if err := os.Remove(c[1]); err != nil {
				t.Fatal(err)
			}
		}, "present"},
		{"reordered chunks", func(t *testing.T, c []string) {
			writable(t, c[1])
			writable(t, c[2])
			b1, _ := os.ReadFile(c[1])
			b2, _ := os.ReadFile(c[2])
			os.WriteFile(c[1], b2, 0o444)
			os.WriteFile(c[2], b1, 0o444)
		}, "sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r, chunks := threeChunkSession(t, "ses_tamper")
			tt.tamper(t, chunks)
			rep, err := r.Verify(context.Background(), "ses_tamper")
			if err != nil {
				t.Fatal(err)
			}
			if rep.Intact || len(rep.Problems) == 0 {
				t.Fatalf("tampering went unnoticed: %+v", rep)
			}
			first := rep.Problems[0]
			if first.Chunk != 2 || first.Check != tt.check || !strings.Contains(rep.Verdict, "chunk 2 (") {
				t.Fatalf("first problem %v, verdict %q; want chunk 2 %s", first, rep.Verdict, tt.check)
			}
			if _, err := r.Open(context.Background(), "ses_tamper", Access{Actor: "sec"}); err != nil {
				t.Fatal(err) // the manifest itself is intact
			}
			rec, _ := r.Open(context.Background(), "ses_tamper", Access{Actor: "sec"})
			var readErr error
			for _, err := range rec.Events(context.Background()) {
				if err != nil {
					readErr = err
				}
			}
			if readErr == nil {
				t.Fatal("reading the tampered recording raised no error")
			}
		})
	}
}

func TestVerifyDetectsManifestTampering(t *testing.T) {
	ctx := context.Background()
	env, r, _ := threeChunkSession(t, "ses_mtamper")
	ls := env.store.(*localdir.Store)
	keys, _ := ls.List(ctx, "sessions/")
	var mpath string
	for _, k := range keys {
		if strings.HasSuffix(k, "/manifest.json") {
			mpath, _ = ls.Path(k)
		}
	}
	writable(t, mpath)
	b, _ := os.ReadFile(mpath)
	forged := bytes.Replace(b, []byte(`"state":"closed"`), []byte(`"state":"closeD"`), 1)
	os.WriteFile(mpath, forged, 0o444)
	rep, err := r.Verify(ctx, "ses_mtamper")
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]bool{}
	for _, p := range rep.Problems {
		checks[p.Check] = true
	}
	if rep.Intact || !checks["signature"] || !checks["manifest hash"] {
		t.Fatalf("forged manifest: want signature and audited-hash failures, got %+v", rep.Problems)
	}
	if _, err := r.Open(ctx, "ses_mtamper", Access{Actor: "sec"}); err == nil {
		t.Fatal("opened a recording with a forged manifest")
	}
}

func TestVerifyMissingRecording(t *testing.T) {
	ctx := context.Background()
	env, r, _ := threeChunkSession(t, "ses_gone")
	ls := env.store.(*localdir.Store)
	keys, _ := ls.List(ctx, "sessions/")
	for _, k := range keys {
		p, _ := ls.Path(k)
		os.Remove(p)
	}
	rep, err := r.Verify(ctx, "ses_gone")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intact || rep.Problems[0].Check != "manifest" || !strings.Contains(rep.Verdict, "missing") {
		t.Fatalf("missing recording: %+v", rep)
	}
}

func TestVerifyLiveSession(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_live"))
	defer w.Close()
	rep, err := r.Verify(ctx, "ses_live")
	if err != nil || rep.Intact || rep.State != "live" {
		t.Fatalf("live session: %+v, %v", rep, err)
	}
	// Another broker's view: only the index knows the session.
	other := newEnv(t, nil)
	other.state = env.state
	r2 := other.recorder()
	rep, err = r2.Verify(ctx, "ses_live")
	if err != nil || rep.Intact || rep.State != "live" || !strings.Contains(rep.Verdict, "not written yet") {
		t.Fatalf("live elsewhere: %+v, %v", rep, err)
	}
}
