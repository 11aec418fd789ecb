// Package keyfile writes the broker's private key files (the SSH user CA,
// the SSH host key, the manifest signing key, the local wrap key) one way:
// created exclusively with mode 0600, synced, and the directory entry
// synced, so after a crash a key is either whole on disk or not there at
// all, and a key that exists is never replaced.
package keyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Mode is the permission of every key file.
const Mode fs.FileMode = 0o600

// Create writes data as a new key file at path, creating its directory
// (mode 0700) when missing. The bytes go to a temporary file beside path
// (created with O_EXCL, mode 0600) that is synced and then linked to path,
// so path never holds a partial key; the link fails when path exists, and
// Create then returns an error wrapping fs.ErrExist. The directory is
// synced after the link.
func Create(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := writeSynced(f, data); err != nil {
		return fmt.Errorf("keyfile: write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keyfile: %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("keyfile: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("keyfile: sync %s: %w", dir, err)
	}
	return nil
}

// LoadOrCreate returns the contents of the key file at path. When the file
// does not exist it writes the bytes gen returns with Create; when another
// process creates the file first, LoadOrCreate returns that file instead.
func LoadOrCreate(path string, gen func() ([]byte, error)) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	b, err = gen()
	if err != nil {
		return nil, fmt.Errorf("keyfile: generate %s: %w", path, err)
	}
	switch err := Create(path, b); {
	case errors.Is(err, fs.ErrExist):
		theirs, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("keyfile: %w", err)
		}
		return theirs, nil
	case err != nil:
		return nil, err
	}
	return b, nil
}

func writeSynced(f *os.File, data []byte) error {
	err := f.Chmod(Mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
