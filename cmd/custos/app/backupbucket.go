package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/backup"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/store"
)

// backupPrefix is where backups are kept in the recordings object store,
// under recording.s3.prefix: backups/<backup id>/<file>.
const backupPrefix = "backups/"

// backupID is what a backup id looks like; nothing else is taken as one,
// so an id can never name a key outside backups/.
var backupID = regexp.MustCompile(`^bak_[a-z0-9]{8,32}$`)

// UploadBackup copies the backup in dir into the recordings object store
// (the bucket, or the local recordings directory) under
// backups/<id>/, each object under Object Lock COMPLIANCE retention for
// retain, the manifest and its signature last so that a backup cut short
// by a failed upload has none and does not restore.
func UploadBackup(ctx context.Context, cfg *config.Config, dir string, m *backup.Manifest, retain time.Duration) (string, error) {
	st, prefix, err := objectStore(cfg.Recording)
	if err != nil {
		return "", fmt.Errorf("backup: upload: %w", err)
	}
	base := prefix + backupPrefix + m.ID + "/"
	names := make([]string, 0, len(m.Files)+2)
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	names = append(names, backup.ManifestFile, backup.SignatureFile)
	until := time.Now().Add(retain).UTC()
	for _, name := range names {
		body, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("backup: upload: %w", err)
		}
		sum := sha256.Sum256(body)
		if _, err := st.Put(ctx, base+name, body, store.PutOptions{RetainUntil: until, SHA256: hex.EncodeToString(sum[:])}); err != nil {
			return "", fmt.Errorf("backup: upload %s: %w", name, err)
		}
	}
	return base, nil
}

// DownloadBackup copies the backup id from the recordings object store
// into dir, a new directory, for Check and Restore, which then check it
// as they check any backup.
func DownloadBackup(ctx context.Context, cfg *config.Config, id, dir string) error {
	if !backupID.MatchString(id) {
		return fmt.Errorf("restore: %q is not a backup id (bak_…)", id)
	}
	st, prefix, err := objectStore(cfg.Recording)
	if err != nil {
		return fmt.Errorf("restore: download: %w", err)
	}
	base := prefix + backupPrefix + id + "/"
	keys, err := st.List(ctx, base)
	if err != nil {
		return fmt.Errorf("restore: download: %w", err)
	}
	if !slices.Contains(keys, base+backup.ManifestFile) {
		return fmt.Errorf("restore: no backup %s in the recordings store (or its upload did not finish)", id)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("restore: download: %w", err)
	}
	for _, k := range keys {
		name := strings.TrimPrefix(k, base)
		if name == "" || name != path.Base(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("restore: download: unexpected object %s", k)
		}
		o, err := st.Get(ctx, k, "")
		if err != nil {
			return fmt.Errorf("restore: download %s: %w", name, err)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("restore: download: %w", err)
		}
		_, err = f.Write(o.Body)
		if err = errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("restore: download: %w", err)
		}
	}
	return nil
}
