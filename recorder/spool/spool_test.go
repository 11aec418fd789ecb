package spool

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSpool(t *testing.T) {
	root := t.TempDir()
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	s, err := d.Create("ses_1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create("ses_1"); err == nil {
		t.Fatal("created the same session twice")
	}
	if _, err := d.Create("../escape"); err == nil {
		t.Fatal("accepted a path as session id")
	}
	for _, seq := range []uint64{2, 1, 10} {
		if err := s.WriteChunk(seq, []byte{byte(seq)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WriteFile("meta.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves a temporary file behind.
	os.WriteFile(filepath.Join(s.Dir(), ".tmp-chunk-000011-123"), []byte("partial"), 0o600)

	seqs, err := s.Chunks()
	if err != nil || !reflect.DeepEqual(seqs, []uint64{1, 2, 10}) {
		t.Fatalf("Chunks = %v, %v", seqs, err)
	}
	if err := s.RemoveTemp(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), ".tmp-chunk-000011-123")); !os.IsNotExist(err) {
		t.Fatal("temporary file survived RemoveTemp")
	}
	if b, err := s.ReadChunk(10); err != nil || b[0] != 10 {
		t.Fatalf("ReadChunk = %v, %v", b, err)
	}
	// Chunks are read-only from the start, so a store can link them.
	if fi, err := os.Stat(s.ChunkPath(10)); err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("chunk file: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(s.Dir(), "meta.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("meta file: %v, %v", fi, err)
	}

	// A log keeps its complete lines; a crash may cut the last one.
	if lines, err := s.ReadLog("log"); err != nil || lines != nil {
		t.Fatalf("missing log: %q, %v", lines, err)
	}
	for _, l := range []string{"one", "two"} {
		if err := s.AppendLog("log", []byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(filepath.Join(s.Dir(), "log"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("thr")
	f.Close()
	lines, err := s.ReadLog("log")
	if err != nil || len(lines) != 2 || string(lines[0]) != "one" || string(lines[1]) != "two" {
		t.Fatalf("ReadLog = %q, %v", lines, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// After the lock is released the spool reopens with its sessions.
	d2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	ids, err := d2.Sessions()
	if err != nil || !reflect.DeepEqual(ids, []string{"ses_1"}) {
		t.Fatalf("Sessions = %v, %v", ids, err)
	}
	s2, err := d2.Session("ses_1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s2.ReadFile("meta.json"); err != nil || string(b) != "{}" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	if err := s2.Remove(); err != nil {
		t.Fatal(err)
	}
	if ids, _ := d2.Sessions(); len(ids) != 0 {
		t.Fatalf("sessions after Remove: %v", ids)
	}
}

// TestWriteChunksStopsAtFailure: chunks are written several at a time,
// but only those before the first failure count, and files written after
// it are removed, so the spool holds an unbroken run.
func TestWriteChunksStopsAtFailure(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := d.Create("ses_batch")
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([][]byte, 12)
	for i := range bodies {
		bodies[i] = []byte{byte(i)}
	}
	if n, err := s.WriteChunks(1, bodies[:3]); n != 3 || err != nil {
		t.Fatalf("WriteChunks = %d, %v", n, err)
	}
	// A directory where chunk 6 must go makes its write fail.
	if err := os.Mkdir(s.ChunkPath(6), 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := s.WriteChunks(4, bodies[3:])
	if n != 2 || err == nil {
		t.Fatalf("WriteChunks = %d, %v; want 2 and an error", n, err)
	}
	os.Remove(s.ChunkPath(6))
	seqs, err := s.Chunks()
	if err != nil || !reflect.DeepEqual(seqs, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("Chunks = %v, %v", seqs, err)
	}
	for _, seq := range seqs {
		if b, err := s.ReadChunk(seq); err != nil || len(b) != 1 || b[0] != byte(seq-1) {
			t.Fatalf("chunk %d = %v, %v", seq, b, err)
		}
	}
}
