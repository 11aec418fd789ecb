package keyfile_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/custos-pam/custos/broker/keyfile"
)

// TestCreateExclusive: a new key file has mode 0600 whatever the umask,
// and an existing file is refused and left untouched.
func TestCreateExclusive(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "keys", "ca.key")
	if err := keyfile.Create(path, []byte("first")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := keyfile.Create(path, []byte("second")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Fatalf("existing key replaced: %q", b)
	}
	// No temporary file is left beside the key.
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the key", len(ents))
	}
}

// TestLoadOrCreate: the first call generates and writes, later calls read
// the same bytes without generating.
func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wrap.key")
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte{byte(calls)}, nil }
	a, err := keyfile.LoadOrCreate(path, gen)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keyfile.LoadOrCreate(path, gen)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || !bytes.Equal(a, b) {
		t.Fatalf("calls %d, first %v, second %v", calls, a, b)
	}
	if _, err := keyfile.LoadOrCreate(filepath.Join(t.TempDir(), "x"), func() ([]byte, error) {
		return nil, errors.New("no entropy")
	}); err == nil {
		t.Fatal("a failing generator still created a key")
	}
}

// TestCreateRefusesDirectoryInPlace: a directory where the key belongs
// is an existing file too.
func TestCreateRefusesDirectoryInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.key")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.Create(path, []byte("k")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("create over a directory: %v", err)
	}
}
