package keywrap

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLocalKeyFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "wrap.key")
	l, err := LoadLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	key, w, err := l.NewDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != DataKeySize || w.Wrapper != "local" || w.KeyID != l.KeyID() {
		t.Fatalf("key %d bytes, wrapped %+v", len(key), w)
	}
	if bytes.Contains([]byte(w.Ciphertext), key) {
		t.Fatal("wrapped form contains the key")
	}
	// A second load of the same file unwraps what the first wrapped.
	again, err := LoadLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.Unwrap(ctx, w)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrap after reload: %v", err)
	}
	// Two data keys differ.
	key2, _, _ := l.NewDataKey(ctx)
	if bytes.Equal(key, key2) {
		t.Fatal("data keys repeat")
	}
}

func TestLocalUnwrapRefuses(t *testing.T) {
	ctx := context.Background()
	a, _ := LoadLocal(filepath.Join(t.TempDir(), "a.key"))
	b, _ := LoadLocal(filepath.Join(t.TempDir(), "b.key"))
	_, w, _ := a.NewDataKey(ctx)
	if _, err := b.Unwrap(ctx, w); !errors.Is(err, ErrWrongWrapper) {
		t.Fatalf("other key file: err = %v", err)
	}
	forged := w
	forged.KeyID = b.KeyID()
	if _, err := b.Unwrap(ctx, forged); err == nil {
		t.Fatal("other key unwrapped a foreign ciphertext")
	}
	flipped := w
	c := []byte(w.Ciphertext)
	c[len(c)-3] ^= 1
	flipped.Ciphertext = string(c)
	if _, err := a.Unwrap(ctx, flipped); err == nil {
		t.Fatal("tampered ciphertext unwrapped")
	}
}

func TestLoadLocalRejectsBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(path, []byte("c2hvcnQ=\n"), 0o600)
	if _, err := LoadLocal(path); err == nil {
		t.Fatal("accepted a short key")
	}
}
