package backup

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// FormatVersion is the backup format this package writes and reads.
const FormatVersion = 1

// File names inside a backup directory.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	KeysFile      = "keys.enc"
)

// Tables are the store's tables in the order they are written and
// restored, each as <table>.jsonl.enc (see TableFile).
var Tables = []string{"requests", "grants", "tokens", "sessions", "audit", "state"}

// TableFile is the name of a table's file: JSON lines, encrypted.
func TableFile(table string) string { return table + ".jsonl.enc" }

// Manifest describes one backup.
type Manifest struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	// CreatedAt is when the snapshot's read transaction began: the
	// recovery point.
	CreatedAt time.Time `json:"created_at"`
	// Driver is the source store's driver, sqlite or postgres.
	Driver string `json:"driver"`
	// Head is the last audit record in the snapshot; a restore must
	// rebuild the chain to exactly this record.
	Head Head `json:"audit_head"`
	// SignedBy is the key id (manifest.KeyID) of the signing key.
	SignedBy string `json:"signed_by"`
	// Keys names the key files sealed in keys.enc.
	Keys  []string `json:"keys"`
	Files []File   `json:"files"`
}

// Head is an audit chain head: the last record's seq and hash. Seq 0 is
// the empty chain.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// File is one file of a backup.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Rows counts the rows (JSON lines) of a table file.
	Rows int64 `json:"rows,omitempty"`
}

// file returns the manifest's entry for name.
func (m *Manifest) file(name string) (File, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

// Errors a restore returns, for errors.Is.
var (
	// ErrTampered means the backup is not what the broker wrote: a file
	// or the manifest was altered, added or removed, or the audit rows do
	// not reach the recorded head.
	ErrTampered = errors.New("backup altered or incomplete")
	// ErrPassphrase means keys.enc did not open with the passphrase.
	ErrPassphrase = errors.New("wrong passphrase, or keys.enc altered")
	// ErrNotEmpty means the target store already holds data.
	ErrNotEmpty = errors.New("target store is not empty")
)

func tampered(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTampered, fmt.Sprintf(format, args...))
}

// hashFile returns a file's size and SHA-256.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// writeManifest writes manifest.json and its signature.
func writeManifest(dir string, m *Manifest, key ed25519.PrivateKey) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := writeFileSync(filepath.Join(dir, ManifestFile), b); err != nil {
		return err
	}
	sig := hex.EncodeToString(ed25519.Sign(key, b)) + "\n"
	return writeFileSync(filepath.Join(dir, SignatureFile), []byte(sig))
}

// writeFileSync writes a new file (mode 0600) and syncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
