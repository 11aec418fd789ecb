// Package spool is the recorder's local, crash-safe staging area: one
// directory per session holding its metadata, its sealed chunks and a log
// of what has been uploaded. Every durable file is written to a temporary
// name, synced, renamed into place and its directory fsynced, so after a
// crash a file is either complete or absent. Chunk files are created
// read-only (0444), so a local store can link them in as they are. A spool
// directory belongs to one process at a time (an exclusive lock on its
// lock file).
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	if err := writeAtomic(s.dir, name, b, 0o600); err != nil {
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

// WriteChunk durably stores sealed chunk seq; see WriteChunks.
func (s *Session) WriteChunk(seq uint64, b []byte) error {
	_, err := s.WriteChunks(seq, [][]byte{b})
	return err
}

// WriteChunks durably stores consecutive sealed chunks from seq on: each
// in a read-only file (one write, fdatasync, rename), several files at a
// time, then one directory fsync for them all. It returns how many are
// durable: on an error, the chunks before the first that failed.
func (s *Session) WriteChunks(seq uint64, bodies [][]byte) (int, error) {
	errs := make([]error, len(bodies))
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelWrites)
	for i, b := range bodies {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			name := chunk.ObjectName(seq + uint64(i))
			if err := writeFile(s.dir, name, b, 0o444); err != nil {
				errs[i] = fmt.Errorf("spool: session %s: write %s: %w", s.id, name, err)
			}
		}()
	}
	wg.Wait()
	n := 0
	var err error
	for _, e := range errs {
		if e != nil {
			err = e
			break
		}
		n++
	}
	for i := n + 1; i < len(bodies); i++ {
		if errs[i] == nil {
			// Written after a chunk that failed: not part of the chain.
			os.Remove(filepath.Join(s.dir, chunk.ObjectName(seq+uint64(i))))
		}
	}
	if n > 0 {
		if serr := syncDir(s.dir); serr != nil {
			return 0, fmt.Errorf("spool: session %s: sync: %w", s.id, serr)
		}
	}
	return n, err
}

// parallelWrites is how many chunk files WriteChunks writes at once: a
// disk serves several syncs in about the time of one.
const parallelWrites = 8

// ChunkPath returns the file of chunk seq, for a store that takes spooled
// files over instead of copying them. The file must not be written to.
func (s *Session) ChunkPath(seq uint64) string {
	return filepath.Join(s.dir, chunk.ObjectName(seq))
}

// AppendLog appends one line to a named log file without forcing it to
// disk: for facts that can be rebuilt after a crash (upload marks). The
// line is written with a single append; a crash may cut the last line,
// which ReadLog then drops.
func (s *Session) AppendLog(name string, line []byte) error {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("spool: session %s: append %s: %w", s.id, name, err)
	}
	_, err = f.Write(append(line[:len(line):len(line)], '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: session %s: append %s: %w", s.id, name, err)
	}
	return nil
}

// ReadLog returns the complete lines of a log file; a missing file has
// none.
func (s *Session) ReadLog(name string) ([][]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: session %s: %w", s.id, err)
	}
	var lines [][]byte
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return lines, nil // a cut last line is dropped
		}
		lines = append(lines, b[:i])
		b = b[i+1:]
	}
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

// writeAtomic writes a file durably: writeFile, then the directory
// fsynced (which also commits the new file's metadata).
func writeAtomic(dir, name string, b []byte, mode os.FileMode) error {
	if err := writeFile(dir, name, b, mode); err != nil {
		return err
	}
	return syncDir(dir)
}

// writeFile writes a temporary file created with mode in one call,
// fdatasyncs it and renames it into place; the rename is durable once the
// directory is synced.
func writeFile(dir, name string, b []byte, mode os.FileMode) error {
	f, err := createTemp(dir, ".tmp-"+name+"-", mode)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// createTemp is os.CreateTemp with a file mode: a read-only mode still
// leaves the returned descriptor writable.
func createTemp(dir, prefix string, mode os.FileMode) (*os.File, error) {
	for range 10000 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create temporary file in %s: %w", dir, fs.ErrExist)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
