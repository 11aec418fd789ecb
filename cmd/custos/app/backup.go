package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pam/custos/broker/backup"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store"
)

// BackupKeys are the key files a backup of the broker cfg describes
// carries, and where a restore with cfg writes them: the recording
// signing key (required: it signs the backup and every manifest and
// checkpoint), the local recording wrap key, the SSH user CA and the SSH
// proxy's host key (each when it exists). TLS certificates and secrets
// given as env:/file: references are the operator's and not included.
func BackupKeys(cfg *config.Config) []backup.KeyFile {
	dd := cfg.Listen.DataDir
	return []backup.KeyFile{
		{Name: backup.SigningKeyName, Path: cfg.Recording.SigningKey},
		{Name: "recording_wrap_key", Path: cfg.Recording.LocalKey, Optional: true},
		{Name: "ssh_user_ca", Path: filepath.Join(dd, "ssh_user_ca"), Optional: true},
		{Name: "ssh_host_key", Path: filepath.Join(dd, "ssh_host_ed25519_key"), Optional: true},
	}
}

// Backup writes a backup of the broker cfg describes into dir. The
// broker may be running: the store is read in one read transaction.
func Backup(ctx context.Context, cfg *config.Config, dir string, passphrase []byte) (*backup.Manifest, error) {
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	driver := cfg.Store.Driver
	if driver == "" {
		driver = "sqlite"
	}
	return backup.Write(ctx, backup.Options{Store: st, Driver: driver, Keys: BackupKeys(cfg), Passphrase: passphrase, Dir: dir})
}

// Restore restores the backup in dir into the store and data directory
// cfg names, which must be empty (a fresh broker). The broker must not be
// running.
func Restore(ctx context.Context, cfg *config.Config, dir string, passphrase []byte, force bool) (*backup.Result, error) {
	c, err := backup.Check(dir, passphrase)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var aside []string
	if force && (cfg.Store.Driver == "" || cfg.Store.Driver == "sqlite") {
		// --force on SQLite: the existing database is moved aside, never
		// deleted. A PostgreSQL database must be emptied by its owner.
		stamp := time.Now().UTC().Format("20060102T150405Z")
		for _, suffix := range []string{"", "-wal", "-shm"} {
			p := cfg.Store.Path + suffix
			if _, err := os.Stat(p); err == nil {
				if err := os.Rename(p, p+".replaced-"+stamp); err != nil {
					return nil, fmt.Errorf("restore: %w", err)
				}
				aside = append(aside, p+".replaced-"+stamp)
			}
		}
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	res, err := backup.Restore(ctx, c, backup.RestoreOptions{Store: st, Keys: BackupKeys(cfg), Force: force})
	if res != nil {
		res.MovedAside = append(aside, res.MovedAside...)
	}
	if err != nil {
		return res, err
	}
	if res.Head != c.Manifest.Head {
		return res, fmt.Errorf("restore: restored head %d is not the backup's %d", res.Head.Seq, c.Manifest.Head.Seq)
	}
	return res, nil
}
