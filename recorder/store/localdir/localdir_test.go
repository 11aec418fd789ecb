package localdir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	"github.com/custos-pam/custos/recorder/store"
)

func TestLocalDir(t *testing.T) {
	ctx := context.Background()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	key := "sessions/2025/01/02/ses_1/chunk-000001"
	if _, err := s.Put(ctx, key, []byte("one"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// A retried identical write succeeds; different bytes never replace.
	if _, err := s.Put(ctx, key, []byte("one"), store.PutOptions{}); err != nil {
		t.Fatalf("identical retry: %v", err)
	}
	if _, err := s.Put(ctx, key, []byte("two"), store.PutOptions{}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	p, _ := s.Path(key)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o444 {
		t.Fatalf("mode %v", fi.Mode())
	}
	o, err := s.Get(ctx, key, "")
	if err != nil || string(o.Body) != "one" {
		t.Fatalf("Get = %q, %v", o.Body, err)
	}
	if _, err := s.Get(ctx, key+"x", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := s.Get(ctx, key, "v2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("version on a versionless store: %v", err)
	}
	s.Put(ctx, "sessions/2025/01/02/ses_1/manifest.json", []byte("{}"), store.PutOptions{})
	keys, err := s.List(ctx, "sessions/2025/01/02/ses_1/")
	if err != nil || !reflect.DeepEqual(keys, []string{key, "sessions/2025/01/02/ses_1/manifest.json"}) {
		t.Fatalf("List = %v, %v", keys, err)
	}
	vs, err := s.Versions(ctx, key)
	if err != nil || len(vs) != 1 || vs[0].Key != key || !vs[0].IsLatest {
		t.Fatalf("Versions = %+v, %v", vs, err)
	}
	for _, bad := range []string{"", "../x", "a/../../b", "/abs", "a//b", `a\b`} {
		if _, err := s.Put(ctx, bad, []byte("x"), store.PutOptions{}); err == nil {
			t.Errorf("accepted key %q", bad)
		}
	}
}

// TestPutFileLinks proves a spooled file is taken over, not copied: the
// stored key is the same file, read-only; retries succeed and other bytes
// never replace it.
func TestPutFileLinks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "chunk")
	if err := os.WriteFile(src, []byte("sealed"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := "sessions/2025/01/02/ses_1/chunk-000001"
	if _, err := s.PutFile(ctx, key, src, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path(key)
	fsrc, _ := os.Stat(src)
	fp, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fsrc, fp) {
		t.Fatal("the stored file is a copy, not the spooled file")
	}
	if fp.Mode().Perm() != 0o444 {
		t.Fatalf("mode %v", fp.Mode())
	}
	if _, err := s.PutFile(ctx, key, src, store.PutOptions{}); err != nil {
		t.Fatalf("identical retry: %v", err)
	}
	copyOf := filepath.Join(dir, "copy")
	os.WriteFile(copyOf, []byte("sealed"), 0o444)
	if _, err := s.PutFile(ctx, key, copyOf, store.PutOptions{}); err != nil {
		t.Fatalf("retry with an equal copy: %v", err)
	}
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("forged"), 0o444)
	if _, err := s.PutFile(ctx, key, other, store.PutOptions{}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	if o, err := s.Get(ctx, key, ""); err != nil || string(o.Body) != "sealed" {
		t.Fatalf("Get = %q, %v", o.Body, err)
	}
}

// TestPutFileAcrossFilesystems: a file on another filesystem cannot be
// linked and is copied.
func TestPutFileAcrossFilesystems(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	other, err := os.MkdirTemp("/dev/shm", "localdir-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, b syscall.Stat_t
	if syscall.Stat(dir, &a) != nil || syscall.Stat(other, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is on the same filesystem as the test directory")
	}
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(other, "chunk")
	os.WriteFile(src, []byte("sealed"), 0o444)
	key := "sessions/2025/01/02/ses_1/chunk-000001"
	if _, err := s.PutFile(ctx, key, src, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path(key)
	fsrc, _ := os.Stat(src)
	fp, _ := os.Stat(p)
	if os.SameFile(fsrc, fp) || fp.Mode().Perm() != 0o444 {
		t.Fatalf("stored %v, same file %v", fp.Mode(), os.SameFile(fsrc, fp))
	}
	if o, err := s.Get(ctx, key, ""); err != nil || string(o.Body) != "sealed" {
		t.Fatalf("Get = %q, %v", o.Body, err)
	}
}
