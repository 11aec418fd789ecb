package backup

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Table files are encrypted as a stream of chunks under the backup's data
// key (XChaCha20-Poly1305), so a backup can be kept anywhere: it holds
// user names, reasons and the session index. A file starts with a
// 16-byte random nonce prefix; each chunk is a 4-byte big-endian length
// and the sealed chunk. A chunk's nonce is the prefix and the chunk's
// number, its associated data the backup id, the file name and whether
// it is the last chunk, so chunks cannot be reordered, moved to another
// file or backup, or cut off the end unnoticed.
const (
	chunkSize   = 64 << 10
	prefixSize  = 16
	maxSealed   = chunkSize + chacha20poly1305.Overhead
	dataKeySize = chacha20poly1305.KeySize
)

func chunkNonce(prefix []byte, n uint64) []byte {
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	copy(nonce, prefix)
	binary.BigEndian.PutUint64(nonce[prefixSize:], n)
	return nonce
}

func chunkAD(backupID, name string, last bool) []byte {
	flag := "more"
	if last {
		flag = "last"
	}
	return []byte(backupID + "\x00" + name + "\x00" + flag)
}

// sealWriter encrypts what is written to it into w.
type sealWriter struct {
	w        io.Writer
	aead     cipher.AEAD
	id, name string
	prefix   []byte
	n        uint64
	buf      []byte
}

func newSealWriter(w io.Writer, key []byte, backupID, name string) (*sealWriter, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	s := &sealWriter{w: w, aead: aead, id: backupID, name: name, prefix: make([]byte, prefixSize), buf: make([]byte, 0, chunkSize)}
	if _, err := rand.Read(s.prefix); err != nil {
		return nil, err
	}
	if _, err := w.Write(s.prefix); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sealWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if len(s.buf) == chunkSize {
			if err := s.flush(false); err != nil {
				return 0, err
			}
		}
		n := copy(s.buf[len(s.buf):chunkSize], p)
		s.buf = s.buf[:len(s.buf)+n]
		p = p[n:]
	}
	return total, nil
}

// Close seals the last chunk (possibly empty).
func (s *sealWriter) Close() error { return s.flush(true) }

func (s *sealWriter) flush(last bool) error {
	sealed := s.aead.Seal(nil, chunkNonce(s.prefix, s.n), s.buf, chunkAD(s.id, s.name, last))
	s.n++
	s.buf = s.buf[:0]
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(sealed)))
	if _, err := s.w.Write(l[:]); err != nil {
		return err
	}
	_, err := s.w.Write(sealed)
	return err
}

// openReader decrypts a sealed table file as it is read. Any failure to
// authenticate is ErrTampered.
type openReader struct {
	r        io.Reader
	aead     cipher.AEAD
	id, name string
	prefix   []byte
	n        uint64
	plain    []byte
	done     bool
}

func newOpenReader(r io.Reader, key []byte, backupID, name string) (*openReader, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	o := &openReader{r: r, aead: aead, id: backupID, name: name, prefix: make([]byte, prefixSize)}
	if _, err := io.ReadFull(r, o.prefix); err != nil {
		return nil, tampered("%s: too short", name)
	}
	return o, nil
}

func (o *openReader) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.done {
			return 0, io.EOF
		}
		if err := o.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}

func (o *openReader) next() error {
	var l [4]byte
	if _, err := io.ReadFull(o.r, l[:]); err != nil {
		return tampered("%s: cut short (no final chunk)", o.name)
	}
	size := binary.BigEndian.Uint32(l[:])
	if size > maxSealed {
		return tampered("%s: chunk %d too large", o.name, o.n)
	}
	sealed := make([]byte, size)
	if _, err := io.ReadFull(o.r, sealed); err != nil {
		return tampered("%s: cut short in chunk %d", o.name, o.n)
	}
	nonce := chunkNonce(o.prefix, o.n)
	// A failed Open may overwrite its dst: decrypt into fresh memory.
	plain, err := o.aead.Open(nil, nonce, sealed, chunkAD(o.id, o.name, false))
	if err != nil {
		plain, err = o.aead.Open(nil, nonce, sealed, chunkAD(o.id, o.name, true))
		if err != nil {
			return tampered("%s: chunk %d does not decrypt", o.name, o.n)
		}
		var extra [1]byte
		if n, _ := o.r.Read(extra[:]); n > 0 {
			return tampered("%s: data after the final chunk", o.name)
		}
		o.done = true
	}
	o.n++
	o.plain = plain
	return nil
}

var errNoDataKey = errors.New("keys.enc holds no data key")

// newDataKey returns a random data key.
func newDataKey() ([]byte, error) {
	k := make([]byte, dataKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return k, nil
}
