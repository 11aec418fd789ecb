package app

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/backup"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store"
	"github.com/custos-pam/custos/recorder/manifest"
)

// BackupKeys are the key files a backup of the broker cfg describes
// carries, and where a restore with cfg writes them: the recording
// signing key (required: it signs the backup and every manifest and
// checkpoint), the local recording wrap key, the SSH user CA and the SSH
// proxy's host key (each when it exists), and the public halves of the
// retired signing keys, without which recordings and checkpoints signed
// before a rotation would no longer verify after a restore. TLS
// certificates and secrets given as env:/file: references are the
// operator's and not included.
func BackupKeys(cfg *config.Config) []backup.KeyFile {
	dd := cfg.Listen.DataDir
	keys := []backup.KeyFile{
		{Name: backup.SigningKeyName, Path: cfg.Recording.SigningKey},
		{Name: "recording_wrap_key", Path: cfg.Recording.LocalKey, Optional: true},
		{Name: "ssh_user_ca", Path: filepath.Join(dd, "ssh_user_ca"), Optional: true},
		{Name: "ssh_host_key", Path: filepath.Join(dd, "ssh_host_ed25519_key"), Optional: true},
	}
	retired, _ := filepath.Glob(filepath.Join(cfg.Recording.RetiredSigningKeys, "*"+manifest.RetiredSuffix))
	for _, p := range retired {
		keys = append(keys, retiredKeyFile(cfg, filepath.Base(p)))
	}
	return keys
}

// retiredKeyPrefix starts the names of retired signing keys in a backup;
// the rest of the name is the file's base name.
const retiredKeyPrefix = "retired_signing_key:"

// retiredKeyFile is the retired signing key file base in cfg's
// recording.retired_signing_keys.
func retiredKeyFile(cfg *config.Config, base string) backup.KeyFile {
	return backup.KeyFile{Name: retiredKeyPrefix + base, Path: filepath.Join(cfg.Recording.RetiredSigningKeys, base), Optional: true}
}

// restoreKeys are BackupKeys and, for each retired signing key the
// backup holds, its place in cfg's recording.retired_signing_keys.
func restoreKeys(cfg *config.Config, names []string) []backup.KeyFile {
	keys := BackupKeys(cfg)
	for _, n := range names {
		base, ok := strings.CutPrefix(n, retiredKeyPrefix)
		if !ok || base != filepath.Base(base) || !strings.HasSuffix(base, manifest.RetiredSuffix) ||
			slices.ContainsFunc(keys, func(k backup.KeyFile) bool { return k.Name == n }) {
			continue
		}
		keys = append(keys, retiredKeyFile(cfg, base))
	}
	return keys
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
	res, err := backup.Restore(ctx, c, backup.RestoreOptions{Store: st, Keys: restoreKeys(cfg, slices.Collect(maps.Keys(c.Keys))), Force: force})
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
