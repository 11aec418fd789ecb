// Package chunk is the stored unit of a recording: a clear frame header
// (session, sequence number, hash of the previous chunk, event count and
// offsets, compression) followed by the events, compressed when that
// helps, sealed with AES-256-GCM under the session's data key, the whole
// header being the additional data. A chunk's hash is the SHA-256 of its
// stored bytes, so a verifier checks the chain without the key. Parse and
// Open read untrusted bytes and are fuzzed.
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

	"github.com/klauspost/compress/s2"
)

// Magic starts every chunk object.
const Magic = "CUSTOSCK"

// Version is the chunk frame version this package writes. Version 1
// frames (no compression field) are still read.
const Version = 2

// Codec says how a chunk's events are compressed before sealing.
type Codec uint8

// Codecs. A reader rejects codecs it does not know.
const (
	// CodecNone stores the encoded events as they are.
	CodecNone Codec = 0
	// CodecS2 stores them as one S2 block (github.com/klauspost/compress/s2,
	// block format, a superset of Snappy's).
	CodecS2 Codec = 1
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecS2:
		return "s2"
	}
	return fmt.Sprintf("codec_%d", uint8(c))
}

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
	// Codec is how the events were compressed and Size their length
	// before compression (version 2; Seal sets both).
	Codec Codec
	Size  uint32
}

// Fixed part of the header after magic, version and the header length:
// seq 8, prev 32, events 4, first 8, last 8, sealed 8, nonce 12, then the
// session id as a length byte and bytes; version 2 adds codec 1 and size 4.
const (
	fixedLen = 8 + 32 + 4 + 8 + 8 + 8 + NonceSize
	v2Len    = 1 + 4
)

// minSaving is the smallest compression gain, as a fraction of the
// events' size (1/minSaving), worth a decompression at read time; below
// it, and for incompressible data, chunks are stored uncompressed.
const minSaving = 32

// MaxSealedLen is the most bytes Seal returns for n bytes of events, for
// sizing buffers given to AppendSeal.
func MaxSealedLen(n int) int {
	return len(Magic) + 3 + fixedLen + 1 + 255 + v2Len + s2.MaxEncodedLen(n) + TagSize
}

// Seal compresses plaintext (encoded events) when that saves space,
// encrypts it under aead and returns the stored chunk bytes. The nonce is
// read from rand.
func Seal(aead cipher.AEAD, f Frame, plaintext []byte, rand io.Reader) ([]byte, error) {
	return AppendSeal(nil, aead, f, plaintext, rand)
}

// AppendSeal is Seal appending the chunk to dst, whose spare capacity it
// uses when that is enough. dst must not overlap plaintext.
func AppendSeal(dst []byte, aead cipher.AEAD, f Frame, plaintext []byte, rand io.Reader) ([]byte, error) {
	if len(f.SessionID) == 0 || len(f.SessionID) > 255 {
		return nil, fmt.Errorf("chunk: seal: session id length %d", len(f.SessionID))
	}
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("chunk: seal: %d bytes exceed %d", len(plaintext), MaxPlaintext)
	}
	if _, err := io.ReadFull(rand, f.Nonce[:]); err != nil {
		return nil, fmt.Errorf("chunk: seal: nonce: %w", err)
	}
	hl := fixedLen + 1 + len(f.SessionID) + v2Len
	start := len(dst)
	pre := start + len(Magic) + 3 + hl
	if need := pre + s2.MaxEncodedLen(len(plaintext)) + TagSize; cap(dst) < need {
		dst = append(make([]byte, 0, need), dst...)
	}
	out := append(dst, Magic...)
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
	codecAt := len(out)
	out = append(out, byte(CodecNone))
	out = binary.BigEndian.AppendUint32(out, uint32(len(plaintext)))

	// Compress straight behind the header and encrypt in place: the
	// ciphertext then starts exactly where its input does.
	body := out[pre:cap(out)]
	if enc := s2.Encode(body, plaintext); len(enc) <= len(plaintext)-len(plaintext)/minSaving-1 {
		out[codecAt] = byte(CodecS2)
		body = enc
	} else {
		body = body[:copy(body, plaintext)]
	}
	return aead.Seal(out, f.Nonce[:], body, out[start:]), nil
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
	if f.Version != 1 && f.Version != Version {
		return f, 0, fmt.Errorf("%w: unsupported version %d", ErrMalformed, f.Version)
	}
	hl := int(binary.BigEndian.Uint16(b[len(Magic)+1:]))
	if hl < fixedLen+2 || len(b) < pre+hl+TagSize {
		return f, 0, fmt.Errorf("%w: header length %d", ErrMalformed, hl)
	}
	sealedLen := len(b) - pre - hl - TagSize
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
	// Bytes after the known fields are reserved for later versions'
	// header fields; they are covered by the additional data.
	f.SessionID = string(h[fixedLen+1 : fixedLen+1+idl])
	if f.First < 0 || f.Last < f.First {
		return f, 0, fmt.Errorf("%w: offsets %d..%d", ErrMalformed, f.First, f.Last)
	}
	if sealedLen > MaxPlaintext {
		return f, 0, fmt.Errorf("%w: too large", ErrMalformed)
	}
	if f.Version == 1 {
		f.Codec, f.Size = CodecNone, uint32(sealedLen)
		return f, pre + hl, nil
	}
	v2 := h[fixedLen+1+idl:]
	if len(v2) < v2Len {
		return f, 0, fmt.Errorf("%w: header length %d", ErrMalformed, hl)
	}
	f.Codec, f.Size = Codec(v2[0]), binary.BigEndian.Uint32(v2[1:])
	switch {
	case f.Size > MaxPlaintext:
		return f, 0, fmt.Errorf("%w: events size %d", ErrMalformed, f.Size)
	case f.Codec == CodecNone && int(f.Size) != sealedLen:
		return f, 0, fmt.Errorf("%w: events size %d, stored %d", ErrMalformed, f.Size, sealedLen)
	case f.Codec != CodecNone && f.Codec != CodecS2:
		return f, 0, fmt.Errorf("%w: unknown codec %d", ErrMalformed, f.Codec)
	}
	return f, pre + hl, nil
}

// Open authenticates, decrypts and decompresses a stored chunk, returning
// its frame and the encoded events.
func Open(aead cipher.AEAD, b []byte) (Frame, []byte, error) {
	f, n, err := Parse(b)
	if err != nil {
		return f, nil, err
	}
	pt, err := aead.Open(nil, f.Nonce[:], b[n:], b[:n])
	if err != nil {
		return f, nil, fmt.Errorf("%w: chunk %d", ErrDecrypt, f.Seq)
	}
	if f.Codec == CodecNone {
		return f, pt, nil
	}
	// Authenticated, so written by a key holder; still checked, as a
	// reader must not trust a size it has not bounded.
	if dl, err := s2.DecodedLen(pt); err != nil || dl != int(f.Size) {
		return f, nil, fmt.Errorf("%w: chunk %d: compressed events do not match size %d", ErrMalformed, f.Seq, f.Size)
	}
	ev, err := s2.Decode(make([]byte, f.Size), pt)
	if err != nil {
		return f, nil, fmt.Errorf("%w: chunk %d: %w", ErrMalformed, f.Seq, err)
	}
	return f, ev, nil
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
