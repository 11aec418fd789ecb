package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRotateSigner: after a rotation the key file holds a new key, the
// old key's public half is in the retired directory, and a manifest
// signed before the rotation verifies with the retired keys and not
// without them; a second rotation keeps both retired keys.
func TestRotateSigner(t *testing.T) {
	dir := t.TempDir()
	path, retired := filepath.Join(dir, "recording-signing.key"), filepath.Join(dir, "retired-signing-keys")
	if _, err := RotateSigner(path, retired); err == nil {
		t.Fatal("rotated a key that does not exist")
	}
	old, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Sign(testManifest(), old)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := RotateSigner(path, retired)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Old != old.KeyID() || rot.New != cur.KeyID() || rot.Old == rot.New {
		t.Fatalf("rotation %+v; old %s, current %s", rot, old.KeyID(), cur.KeyID())
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v, %v", fi, err)
	}
	if _, err := signed.Verify(cur.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("an old manifest verified with the new key alone: %v", err)
	}
	keys, err := LoadRetiredKeys(retired)
	if err != nil || len(keys) != 1 {
		t.Fatalf("retired keys %d, %v", len(keys), err)
	}
	if id, err := signed.Verify(append(keys, cur.Public())...); err != nil || id != old.KeyID() {
		t.Fatalf("old manifest with the retired key: %s, %v", id, err)
	}
	if _, err := RotateSigner(path, retired); err != nil {
		t.Fatal(err)
	}
	if keys, err = LoadRetiredKeys(retired); err != nil || len(keys) != 2 {
		t.Fatalf("after a second rotation: %d retired keys, %v", len(keys), err)
	}
	// A damaged retired key file is an error, not silently distrusted.
	if err := os.WriteFile(filepath.Join(retired, "junk.pub"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRetiredKeys(retired); err == nil {
		t.Fatal("a damaged retired key file was accepted")
	}
	if keys, err := LoadRetiredKeys(filepath.Join(dir, "none")); err != nil || len(keys) != 0 {
		t.Fatalf("missing directory: %v, %v", keys, err)
	}
}
