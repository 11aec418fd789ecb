package recorder

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/spool"
	"github.com/custos-pam/custos/recorder/store"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// waitFile polls until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLocalStoreTakesSpooledChunks proves the local store keeps the
// spooled chunk file itself (a hard link, read-only), not a second copy
// written and synced again, and that the recording reads back intact.
func TestLocalStoreTakesSpooledChunks(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, err := r.Start(ctx, testHeader("ses_link"))
	if err != nil {
		t.Fatal(err)
	}
	w.Output(1, []byte("linked, not copied"))
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ls := env.store.(*localdir.Store)
	stored, err := ls.Path(r.sessionPrefix("ses_link", w.Header().StartedAt) + chunk.ObjectName(1))
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, stored)
	spooled, err := os.Stat(filepath.Join(env.dir, "spool", "ses_link", chunk.ObjectName(1)))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(spooled, fi) || fi.Mode().Perm() != 0o444 {
		t.Fatalf("stored chunk: same file as spooled %v, mode %v", os.SameFile(spooled, fi), fi.Mode())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	if _, err := os.Stat(filepath.Join(env.dir, "spool", "ses_link")); !os.IsNotExist(err) {
		t.Fatalf("spool not cleared: %v", err)
	}
	rep, err := r.Verify(ctx, "ses_link")
	if err != nil || rep.Verdict != "intact" {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	var out bytes.Buffer
	for _, e := range readAll(t, r, "ses_link") {
		out.Write(e.Data)
	}
	if out.String() != "linked, not copied" {
		t.Fatalf("recorded %q", out.String())
	}
}

// lookupStore counts, per key, the puts and version lookups a recorder
// makes (and takes no files over, so every upload goes through Put).
type lookupStore struct {
	ObjectStore
	mu      sync.Mutex
	puts    map[string]int
	lookups map[string]int
}

func (s *lookupStore) Put(ctx context.Context, key string, b []byte, o store.PutOptions) (string, error) {
	s.mu.Lock()
	s.puts[key]++
	s.mu.Unlock()
	return s.ObjectStore.Put(ctx, key, b, o)
}

func (s *lookupStore) Versions(ctx context.Context, prefix string) ([]store.Version, error) {
	s.mu.Lock()
	s.lookups[prefix]++
	s.mu.Unlock()
	return s.ObjectStore.Versions(ctx, prefix)
}

func (s *lookupStore) touched(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, n := range s.puts {
		if strings.HasSuffix(k, "/"+name) && n > 0 {
			return true
		}
	}
	for k, n := range s.lookups {
		if strings.HasSuffix(k, "/"+name) && n > 0 {
			return true
		}
	}
	return false
}

// TestRecoveryHonorsUploadMarks: after a restart, chunks the upload log
// (or a mark file from an older spool) lists are not uploaded or looked up
// again; a chunk whose log line a crash cut short is looked up again.
func TestRecoveryHonorsUploadMarks(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	r1 := env.recorder(func(c *Config) { c.ChunkSize = 1 << 10 })
	w, err := r1.Start(ctx, testHeader("ses_marks"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Output(1, bytes.Repeat([]byte("m"), 1100)) // one chunk each
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(env.dir, "spool", "ses_marks")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, uploadLog))
		if bytes.Count(b, []byte("\n")) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload log: %q", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r1.Close()

	// Rewrite the marks: chunk 1 in the log, chunk 2 as an old-style mark
	// file, chunk 3's line cut short by a crash.
	log := `{"seq":1,"version_id":""}` + "\n" + `{"seq":3,"vers`
	if err := os.WriteFile(filepath.Join(dir, uploadLog), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, chunk.ObjectName(2)+uploadedExt), []byte(`{"version_id":""}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ls := &lookupStore{ObjectStore: env.store, puts: map[string]int{}, lookups: map[string]int{}}
	env.store = ls
	r2 := env.recorder()
	drain(t, r2)
	for _, c := range []struct {
		name    string
		touched bool
	}{{chunk.ObjectName(1), false}, {chunk.ObjectName(2), false}, {chunk.ObjectName(3), true}} {
		if got := ls.touched(c.name); got != c.touched {
			t.Errorf("%s uploaded or looked up again: %v, want %v", c.name, got, c.touched)
		}
	}
	rep, err := r2.Verify(ctx, "ses_marks")
	if err != nil || rep.Verdict != "intact" {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// copyingStore hides PutFile: chunks are sent as bytes.
type copyingStore struct{ ObjectStore }

// TestSpooledChunkVanished: a spooled chunk deleted before its upload ends
// the recording before it, as interrupted, whether the store is sent bytes
// or takes files over.
func TestSpooledChunkVanished(t *testing.T) {
	for _, files := range []bool{true, false} {
		t.Run(fmt.Sprintf("files=%v", files), func(t *testing.T) {
			ctx := context.Background()
			env := newEnv(t, nil)
			if !files {
				env.store = copyingStore{env.store}
			}
			// Chunk 1 disappears right after it is durable, before it is
			// acknowledged and uploaded.
			vanish := func(sp *spool.Session, seq uint64, bodies [][]byte) (int, error) {
				n, err := sp.WriteChunks(seq, bodies)
				if seq == 1 && n > 0 {
					os.Remove(sp.ChunkPath(1))
				}
				return n, err
			}
			r := env.recorder(func(c *Config) { c.spoolWrite = vanish })
			w, err := r.Start(ctx, testHeader("ses_vanish"))
			if err != nil {
				t.Fatal(err)
			}
			w.Output(1, []byte("gone"))
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			drain(t, r)
			rep, err := r.Verify(ctx, "ses_vanish")
			if err != nil || !rep.Intact || rep.State != "interrupted" || rep.Chunks != 0 {
				t.Fatalf("verify: %+v, %v", rep, err)
			}
			if s := env.session("ses_vanish"); !strings.Contains(s.EndReason, "chunk 1 was lost") {
				t.Fatalf("end reason %q", s.EndReason)
			}
		})
	}
}
