// Package localdir stores recordings in a local directory with the same
// key layout as the S3 store. Files are written once (never replaced),
// fsynced and made read-only (0444). PutFile takes a file over by hard
// link instead of copying it, when both are on one filesystem. A
// directory cannot enforce retention: it is the embedded default for a
// single host, not an Object Lock substitute.
package localdir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/custos-pam/custos/recorder/store"
)

// Store is a directory store.
type Store struct {
	root string
}

// New returns a store rooted at dir, creating it (0700) if needed.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	return &Store{root: dir}, nil
}

// Kind returns "local".
func (s *Store) Kind() string { return "local" }

// ObjectLock reports that this store cannot enforce retention.
func (s *Store) ObjectLock() bool { return false }

// Root returns the directory.
func (s *Store) Root() string { return s.root }

// Path returns the file that holds key.
func (s *Store) Path(key string) (string, error) {
	clean := path.Clean("/" + key)
	if key == "" || clean != "/"+key || strings.Contains(key, "\\") {
		return "", fmt.Errorf("local store: invalid key %q", key)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Check verifies the directory is writable.
func (s *Store) Check(context.Context) error {
	f, err := os.CreateTemp(s.root, ".check-*")
	if err != nil {
		return fmt.Errorf("local store: %s is not writable: %w", s.root, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Put writes key once. Writing identical bytes again succeeds (a retried
// upload); different bytes fail with store.ErrExists. The version id is
// always empty.
func (s *Store) Put(_ context.Context, key string, body []byte, _ store.PutOptions) (string, error) {
	p, err := s.Path(key)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("local store: put %s: %w", key, err)
	}
	if old, err := os.ReadFile(p); err == nil {
		if bytes.Equal(old, body) {
			return "", nil
		}
		return "", fmt.Errorf("local store: put %s: %w", key, store.ErrExists)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return "", fmt.Errorf("local store: put %s: %w", key, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(body); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o444)
	}
	if err == nil {
		// Link, unlike rename, refuses to replace an existing file.
		err = os.Link(tmp.Name(), p)
	}
	if err == nil {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil {
		return "", fmt.Errorf("local store: put %s: %w", key, err)
	}
	return "", nil
}

// PutFile stores the file at src under key, as Put would store its
// bytes. On the same filesystem the file is hard-linked into the store,
// not copied: src must be complete, synced and never written again. A
// file that is not read-only yet is made so (0444), which src then shares.
// Elsewhere its bytes are copied.
func (s *Store) PutFile(ctx context.Context, key, src string, opts store.PutOptions) (string, error) {
	p, err := s.Path(key)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("local store: put %s: %w", key, err)
	}
	err = os.Link(src, p)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		if same, serr := sameContent(src, p); serr != nil {
			return "", fmt.Errorf("local store: put %s: %w", key, serr)
		} else if !same {
			return "", fmt.Errorf("local store: put %s: %w", key, store.ErrExists)
		}
		return "", nil
	case errors.Is(err, syscall.EXDEV), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EMLINK),
		errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.ENOSYS):
		// Another filesystem, or one without hard links: copy.
		body, rerr := os.ReadFile(src)
		if rerr != nil {
			return "", fmt.Errorf("local store: put %s: %w", key, rerr)
		}
		return s.Put(ctx, key, body, opts)
	default:
		return "", fmt.Errorf("local store: put %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err == nil && fi.Mode().Perm() != 0o444 {
		if err = os.Chmod(p, 0o444); err == nil {
			err = syncFile(p)
		}
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return "", fmt.Errorf("local store: put %s: %w", key, err)
	}
	return "", nil
}

// sameContent reports whether two files hold the same bytes: the same
// file (a retried link), or equal copies.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	if os.SameFile(fa, fb) {
		return true, nil
	}
	if fa.Size() != fb.Size() {
		return false, nil
	}
	ba, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ba, bb), nil
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get reads key. versionID must be empty: a directory keeps one version.
func (s *Store) Get(_ context.Context, key, versionID string) (store.Object, error) {
	p, err := s.Path(key)
	if err != nil {
		return store.Object{}, err
	}
	if versionID != "" {
		return store.Object{}, fmt.Errorf("local store: get %s version %s: %w", key, versionID, store.ErrNotFound)
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return store.Object{}, fmt.Errorf("local store: get %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.Object{}, fmt.Errorf("local store: get %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return store.Object{}, fmt.Errorf("local store: get %s: %w", key, err)
	}
	sum := sha256.Sum256(b)
	return store.Object{Key: key, Body: b, LastModified: fi.ModTime().UTC(), SHA256: hex.EncodeToString(sum[:])}, nil
}

// Versions returns the keys under prefix, each with its single version.
func (s *Store) Versions(ctx context.Context, prefix string) ([]store.Version, error) {
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]store.Version, 0, len(keys))
	for _, k := range keys {
		p, err := s.Path(k)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("local store: %w", err)
		}
		out = append(out, store.Version{Key: k, IsLatest: true, Size: fi.Size(), LastModified: fi.ModTime().UTC()})
	}
	return out, nil
}

// List returns the keys under prefix in lexical order.
func (s *Store) List(_ context.Context, prefix string) ([]string, error) {
	var out []string
	// Walk only the prefix's folder: listing checkpoints must not read
	// every recording's directory.
	start := s.root
	if i := strings.LastIndex(prefix, "/"); i > 0 {
		if p, err := s.Path(prefix[:i]); err == nil {
			start = p
		}
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, prefix) {
			out = append(out, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local store: list %s: %w", prefix, err)
	}
	sort.Strings(out)
	return out, nil
}
