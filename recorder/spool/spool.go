// Package spool is the recorder's local, crash-safe staging area: one
// directory per session holding its metadata, its sealed chunks and marks
// of what has been uploaded. Every file is written to a temporary name,
// fsynced, renamed into place and its directory fsynced, so after a crash a
// file is either complete or absent. A spool directory belongs to one
// process at a time (an exclusive lock on its lock file).
package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/event"
)

// ErrLocked is returned when another process holds the spool.
var ErrLocked = errors.New("spool is in use by another process")

// Dir is an open spool directory.
type Dir struct {
	root string
	lock *os.File
}

// Open opens (creating, mode 0700) the spool at root and locks it.
func Open(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool %s: %w", root, ErrLocked)
		}
		return nil, fmt.Errorf("spool %s: lock: %w", root, err)
	}
	return &Dir{root: root, lock: f}, nil
}

// Close releases the lock.
func (d *Dir) Close() error { return d.lock.Close() }

// Root returns the spool directory.
func (d *Dir) Root() string { return d.root }

// Create makes the directory of a new session.
func (d *Dir) Create(id string) (*Session, error) {
	if err := event.ValidSessionID(id); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	p := filepath.Join(d.root, id)
	if err := os.Mkdir(p, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create session %s: %w", id, err)
	}
	if err := syncDir(d.root); err != nil {
		return nil, fmt.Errorf("spool: create session %s: %w", id, err)
	}
	return &Session{dir: p, id: id}, nil
}

// Session opens the directory of an existing session.
func (d *Dir) Session(id string) (*Session, error) {
	if err := event.ValidSessionID(id); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	p := filepath.Join(d.root, id)
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("spool: session %s: %w", id, fs.ErrNotExist)
	}
	return &Session{dir: p, id: id}, nil
}

// Sessions lists the ids of spooled sessions.
func (d *Dir) Sessions() ([]string, error) {
	ents, err := os.ReadDir(d.root)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && event.ValidSessionID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Session is one session's spool directory.
type Session struct {
	dir string
	id  string
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Dir returns the directory.
func (s *Session) Dir() string { return s.dir }

// WriteFile durably writes a small named file (metadata, marks).
func (s *Session) WriteFile(name string, b []byte) error {
	if err := writeAtomic(s.dir, name, b); err != nil {
		return fmt.Errorf("spool: session %s: write %s: %w", s.id, name, err)
	}
	return nil
}

// WriteHint writes a small named file without forcing it to disk: for
// facts that can be rebuilt after a crash (upload marks). A reader sees
// either the whole file or none.
func (s *Session) WriteHint(name string, b []byte) error {
	f, err := os.CreateTemp(s.dir, ".tmp-"+name+"-*")
	if err != nil {
		return fmt.Errorf("spool: session %s: write %s: %w", s.id, name, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("spool: session %s: write %s: %w", s.id, name, err)
	}
	return nil
}

// ReadFile reads a named file; a missing file wraps fs.ErrNotExist.
func (s *Session) ReadFile(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("spool: session %s: %w", s.id, err)
	}
	return b, nil
}

// WriteChunk durably stores sealed chunk seq.
func (s *Session) WriteChunk(seq uint64, b []byte) error {
	return s.WriteFile(chunk.ObjectName(seq), b)
}

// ReadChunk reads sealed chunk seq.
func (s *Session) ReadChunk(seq uint64) ([]byte, error) {
	return s.ReadFile(chunk.ObjectName(seq))
}

// Chunks returns the sequence numbers of the complete chunks in order.
func (s *Session) Chunks() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: session %s: %w", s.id, err)
	}
	var seqs []uint64
	for _, e := range ents {
		if seq, ok := chunk.ParseObjectName(e.Name()); ok {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// RemoveTemp deletes temporary files a crash left behind. Call it only for
// a session no writer is using.
func (s *Session) RemoveTemp() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: session %s: %w", s.id, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil {
				return fmt.Errorf("spool: session %s: %w", s.id, err)
			}
		}
	}
	return nil
}

// Remove deletes the session's directory once its recording is stored.
func (s *Session) Remove() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("spool: session %s: %w", s.id, err)
	}
	return nil
}

func writeAtomic(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
