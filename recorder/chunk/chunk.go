// Package chunk is the stored unit of a recording: a clear frame header
// (session, sequence number, hash of the previous chunk, event count and
// offsets) followed by the events sealed with AES-256-GCM under the
// session's data key, the whole header being the additional data. A chunk's
// hash is the SHA-256 of its stored bytes, so a verifier checks the chain
// without the key. Parse reads untrusted bytes and is fuzzed.
package chunk

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Magic starts every chunk object.
const Magic = "CUSTOSCK"

// Version is the chunk frame version this package writes.
const Version = 1

// MaxPlaintext bounds a chunk's encoded events. Writers close chunks at
// about 1 MiB; the bound leaves room for one large event on top.
const MaxPlaintext = 64 << 20

// NonceSize and TagSize are the AES-GCM nonce and tag lengths.
const (
	NonceSize = 12
	TagSize   = 16
)

// ErrMalformed is wrapped by every parsing error; ErrDecrypt by a failed
// authentication.
var (
	ErrMalformed = errors.New("malformed chunk")
	ErrDecrypt   = errors.New("chunk authentication failed")
)

// Frame is a chunk's clear header.
type Frame struct {
	Version   uint8
	SessionID string
	Seq       uint64
	// Prev is the SHA-256 of the previous chunk's stored bytes; for the
	// first chunk, the SHA-256 of the session header.
	Prev [32]byte
	// Events counts the events in the chunk; First and Last are the
	// offsets of its first and last event.
	Events      uint32
	First, Last time.Duration
	// Sealed is when the chunk was sealed (wall clock).
	Sealed time.Time
	Nonce  [NonceSize]byte
}

// Fixed part of the header after magic, version and the header length:
// seq 8, prev 32, events 4, first 8, last 8, sealed 8, nonce 12, then the
// session id as a length byte and bytes.
const fixedLen = 8 + 32 + 4 + 8 + 8 + 8 + NonceSize

// Seal encrypts plaintext (encoded events) under aead and returns the
// stored chunk bytes. The nonce is read from rand.
func Seal(aead cipher.AEAD, f Frame, plaintext []byte, rand io.Reader) ([]byte, error) {
	if len(f.SessionID) == 0 || len(f.SessionID) > 255 {
		return nil, fmt.Errorf("chunk: seal: session id length %d", len(f.SessionID))
	}
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("chunk: seal: %d bytes exceed %d", len(plaintext), MaxPlaintext)
	}
	if _, err := io.ReadFull(rand, f.Nonce[:]); err != nil {
		return nil, fmt.Errorf("chunk: seal: nonce: %w", err)
	}
	hl := fixedLen + 1 + len(f.SessionID)
	out := make([]byte, 0, len(Magic)+3+hl+len(plaintext)+TagSize)
	out = append(out, Magic...)
	out = append(out, Version)
	out = binary.BigEndian.AppendUint16(out, uint16(hl))
	out = binary.BigEndian.AppendUint64(out, f.Seq)
	out = append(out, f.Prev[:]...)
	out = binary.BigEndian.AppendUint32(out, f.Events)
	out = binary.BigEndian.AppendUint64(out, uint64(f.First))
	out = binary.BigEndian.AppendUint64(out, uint64(f.Last))
	out = binary.BigEndian.AppendUint64(out, uint64(f.Sealed.UnixNano()))
	out = append(out, f.Nonce[:]...)
	out = append(out, byte(len(f.SessionID)))
	out = append(out, f.SessionID...)
	return aead.Seal(out, f.Nonce[:], plaintext, out), nil
}

// Parse reads the clear frame header of a stored chunk and returns it with
// the number of header bytes (the additional data of the ciphertext).
func Parse(b []byte) (Frame, int, error) {
	var f Frame
	pre := len(Magic) + 3
	if len(b) < pre || string(b[:len(Magic)]) != Magic {
		return f, 0, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	f.Version = b[len(Magic)]
	if f.Version != Version {
		return f, 0, fmt.Errorf("%w: unsupported version %d", ErrMalformed, f.Version)
	}
	hl := int(binary.BigEndian.Uint16(b[len(Magic)+1:]))
	if hl < fixedLen+2 || len(b) < pre+hl+TagSize {
		return f, 0, fmt.Errorf("%w: header length %d", ErrMalformed, hl)
	}
	h := b[pre : pre+hl]
	f.Seq = binary.BigEndian.Uint64(h)
	copy(f.Prev[:], h[8:40])
	f.Events = binary.BigEndian.Uint32(h[40:])
	f.First = time.Duration(binary.BigEndian.Uint64(h[44:]))
	f.Last = time.Duration(binary.BigEndian.Uint64(h[52:]))
	f.Sealed = time.Unix(0, int64(binary.BigEndian.Uint64(h[60:]))).UTC()
	copy(f.Nonce[:], h[68:68+NonceSize])
	idl := int(h[fixedLen])
	if idl == 0 || fixedLen+1+idl > hl {
		return f, 0, fmt.Errorf("%w: session id length %d", ErrMalformed, idl)
	}
	// Bytes after the session id are reserved for later versions'
	// header fields; they are covered by the additional data.
	f.SessionID = string(h[fixedLen+1 : fixedLen+1+idl])
	if f.First < 0 || f.Last < f.First {
		return f, 0, fmt.Errorf("%w: offsets %d..%d", ErrMalformed, f.First, f.Last)
	}
	if len(b)-pre-hl-TagSize > MaxPlaintext {
		return f, 0, fmt.Errorf("%w: too large", ErrMalformed)
	}
	return f, pre + hl, nil
}

// Open authenticates and decrypts a stored chunk, returning its frame and
// the encoded events.
func Open(aead cipher.AEAD, b []byte) (Frame, []byte, error) {
	f, n, err := Parse(b)
	if err != nil {
		return f, nil, err
	}
	pt, err := aead.Open(nil, f.Nonce[:], b[n:], b[:n])
	if err != nil {
		return f, nil, fmt.Errorf("%w: chunk %d", ErrDecrypt, f.Seq)
	}
	return f, pt, nil
}

// Hash returns the SHA-256 of a stored chunk: what the next chunk's Prev
// and the manifest record.
func Hash(b []byte) [32]byte { return sha256.Sum256(b) }

// NewAEAD returns AES-256-GCM for a 32-byte data key.
func NewAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("chunk: data key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("chunk: %w", err)
	}
	return cipher.NewGCM(block)
}

// ObjectName returns the file or object name of chunk seq:
// "chunk-000001" and so on (wider past 999999).
func ObjectName(seq uint64) string { return fmt.Sprintf("chunk-%06d", seq) }

// ParseObjectName is the inverse of ObjectName.
func ParseObjectName(name string) (uint64, bool) {
	var seq uint64
	if len(name) < len("chunk-000000") || name[:6] != "chunk-" {
		return 0, false
	}
	for _, c := range name[6:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		seq = seq*10 + uint64(c-'0')
	}
	return seq, seq > 0 && ObjectName(seq) == name
}
