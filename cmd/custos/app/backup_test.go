package app

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/manifest"
)

// testKeyConfig is a config with an SQLite store and a recording signing
// key under dir.
func testKeyConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	cfg := &config.Config{}
	cfg.Listen.DataDir = filepath.Join(dir, "data")
	cfg.Store = config.Store{Driver: "sqlite", Path: filepath.Join(dir, "custos.db")}
	cfg.Recording.SigningKey = filepath.Join(cfg.Listen.DataDir, "recording-signing.key")
	cfg.Recording.LocalKey = filepath.Join(cfg.Listen.DataDir, "recording-wrap.key")
	cfg.Recording.RetiredSigningKeys = filepath.Join(cfg.Listen.DataDir, "retired-signing-keys")
	return cfg
}

func writeSigningKey(t *testing.T, path string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBackupCarriesRetiredSigningKeys: a broker whose signing key was
// rotated is backed up and restored into a fresh data directory; the
// restored broker trusts the retired key too, so what it signed before
// the rotation still verifies.
func TestBackupCarriesRetiredSigningKeys(t *testing.T) {
	ctx := context.Background()
	src := testKeyConfig(t, t.TempDir())
	writeSigningKey(t, src.Recording.SigningKey)
	rot, err := RotateSigningKey(src)
	if err != nil {
		t.Fatal(err)
	}
	want, err := retiredKeys(src)
	if err != nil || len(want) != 1 {
		t.Fatalf("retired keys before the backup: %d, %v", len(want), err)
	}
	backupDir := filepath.Join(t.TempDir(), "backup")
	pass := []byte("correct horse battery staple")
	if _, err := Backup(ctx, src, backupDir, pass); err != nil {
		t.Fatal(err)
	}

	dst := testKeyConfig(t, t.TempDir())
	res, err := Restore(ctx, dst, backupDir, pass, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored keys: %v (rotation %s -> %s)", res.KeysWritten, rot.Old, rot.New)
	got, err := retiredKeys(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Equal(want[0]) {
		t.Fatalf("retired keys after the restore: %d, want the one retired before the backup", len(got))
	}
}

// TestRestoreKeysStayInTheirDirectory: a retired key's name in a backup
// never places a file outside recording.retired_signing_keys.
func TestRestoreKeysStayInTheirDirectory(t *testing.T) {
	cfg := testKeyConfig(t, t.TempDir())
	names := []string{
		retiredKeyPrefix + "../../../etc/evil" + manifest.RetiredSuffix,
		retiredKeyPrefix + "sub/dir" + manifest.RetiredSuffix,
		retiredKeyPrefix + "not-a-public-key",
		retiredKeyPrefix + "ok" + manifest.RetiredSuffix,
	}
	var placed []string
	for _, k := range restoreKeys(cfg, names) {
		if filepath.Dir(k.Path) == cfg.Recording.RetiredSigningKeys {
			placed = append(placed, filepath.Base(k.Path))
		}
	}
	if len(placed) != 1 || placed[0] != "ok"+manifest.RetiredSuffix {
		t.Fatalf("retired keys placed: %v, want only ok%s", placed, manifest.RetiredSuffix)
	}
}
