// Package manifest is the signed closing record of a recording: the chunk
// list with hashes, pinned object versions, counts and times, the session
// header and its hash, the wrapped data key and the chain head, signed with
// the broker's Ed25519 key. The signature covers the exact bytes of the
// "manifest" member, so a verifier never re-encodes what it checks.
package manifest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/recorder/keywrap"
)

// Format and Version identify the manifest encoding.
const (
	Format  = "custos-recording"
	Version = 1
)

// Manifest states: how the session ended.
const (
	StateClosed      = "closed"
	StateInterrupted = "interrupted"
	StateTerminated  = "terminated"
)

// Manifest describes one closed recording.
type Manifest struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	SessionID string `json:"session_id"`
	// Header is the session header exactly as encoded at start;
	// HeaderHash is its hex SHA-256 and the root of the chunk chain.
	Header     json.RawMessage `json:"header"`
	HeaderHash string          `json:"header_hash"`
	// State is closed, interrupted or terminated. EndedBy and EndReason
	// say who ended a terminated session and why, or why a session was
	// interrupted.
	State     string    `json:"state"`
	EndedBy   string    `json:"ended_by,omitempty"`
	EndReason string    `json:"end_reason,omitempty"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	// Cipher is the chunk cipher, "AES-256-GCM"; Key the wrapped data key.
	Cipher string          `json:"cipher"`
	Key    keywrap.Wrapped `json:"key"`
	// Prefix is the object key prefix every chunk key starts with.
	Prefix string  `json:"prefix"`
	Chunks []Chunk `json:"chunks"`
	// ChainHead is the hash of the last chunk (HeaderHash when there are
	// no chunks).
	ChainHead string `json:"chain_head"`
	Events    int64  `json:"events"`
	// Bytes is the total stored size of the chunks.
	Bytes int64 `json:"bytes"`
	// Retention is the Object Lock every object of the recording carries.
	Retention Retention `json:"retention"`
	// Store is "s3" or "local".
	Store     string    `json:"store"`
	CreatedAt time.Time `json:"created_at"`
}

// Chunk is one chunk of a manifest.
type Chunk struct {
	Seq uint64 `json:"seq"`
	Key string `json:"key"`
	// VersionID pins the object version written by the broker; empty on
	// stores without versions.
	VersionID string `json:"version_id,omitempty"`
	// SHA256 is the hex hash of the stored bytes; Prev that of the chunk
	// before (HeaderHash for the first).
	SHA256 string        `json:"sha256"`
	Prev   string        `json:"prev"`
	Size   int64         `json:"size"`
	Events uint32        `json:"events"`
	First  time.Duration `json:"first_offset_ns"`
	Last   time.Duration `json:"last_offset_ns"`
	Sealed time.Time     `json:"sealed_at"`
}

// Retention is the Object Lock applied to a recording's objects.
type Retention struct {
	// Mode is "COMPLIANCE", or empty on a store without Object Lock.
	Mode      string    `json:"mode,omitempty"`
	Until     time.Time `json:"until"`
	LegalHold bool      `json:"legal_hold,omitempty"`
}

// Signature is the detached Ed25519 signature of a manifest.
type Signature struct {
	Alg   string `json:"alg"`
	KeyID string `json:"key_id"`
	// PublicKey is informational: verifiers use their trusted keys.
	PublicKey string `json:"public_key"`
	Value     string `json:"value"`
}

// Signed is a parsed manifest file.
type Signed struct {
	Manifest  Manifest
	Signature Signature
	// Raw is the exact signed bytes of the manifest member.
	Raw json.RawMessage
	// Hash is the hex SHA-256 of the whole file: what the audit log and
	// session index record.
	Hash string
}

// file is the manifest file layout.
type file struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature Signature       `json:"signature"`
}

// signingContext separates manifest signatures from any other use of the key.
const signingContext = "custos recording manifest v1\n"

// ErrSignature is wrapped by every signature failure.
var ErrSignature = errors.New("manifest signature invalid")

// Sign encodes m and signs it, returning the manifest file bytes and their
// hex SHA-256.
func Sign(m *Manifest, s *Signer) ([]byte, string, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("manifest: encode: %w", err)
	}
	sig := ed25519.Sign(s.key, append([]byte(signingContext), raw...))
	sb, err := json.Marshal(Signature{
		Alg: "ed25519", KeyID: s.KeyID(),
		PublicKey: base64.StdEncoding.EncodeToString(s.Public()),
		Value:     base64.StdEncoding.EncodeToString(sig),
	})
	if err != nil {
		return nil, "", fmt.Errorf("manifest: encode: %w", err)
	}
	// The outer object is written by hand so the signed member stays
	// byte-identical to what was signed.
	out := make([]byte, 0, len(raw)+len(sb)+40)
	out = append(out, `{"manifest":`...)
	out = append(out, raw...)
	out = append(out, `,"signature":`...)
	out = append(out, sb...)
	out = append(out, "}\n"...)
	return out, HashFile(out), nil
}

// HashFile returns the hex SHA-256 of manifest file bytes.
func HashFile(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Parse decodes a manifest file without checking its signature.
func Parse(b []byte) (*Signed, error) {
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("manifest: parse: %w", err)
	}
	if len(f.Manifest) == 0 {
		return nil, errors.New("manifest: parse: no manifest member")
	}
	s := &Signed{Signature: f.Signature, Raw: f.Manifest, Hash: HashFile(b)}
	if err := json.Unmarshal(f.Manifest, &s.Manifest); err != nil {
		return nil, fmt.Errorf("manifest: parse: %w", err)
	}
	if s.Manifest.Format != Format || s.Manifest.Version != Version {
		return nil, fmt.Errorf("manifest: unsupported format %q version %d", s.Manifest.Format, s.Manifest.Version)
	}
	return s, nil
}

// Verify checks the signature against the trusted public keys and returns
// the key id that signed.
func (s *Signed) Verify(trusted ...ed25519.PublicKey) (string, error) {
	if s.Signature.Alg != "ed25519" {
		return "", fmt.Errorf("%w: algorithm %q", ErrSignature, s.Signature.Alg)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature.Value)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return "", fmt.Errorf("%w: malformed", ErrSignature)
	}
	msg := append([]byte(signingContext), s.Raw...)
	for _, pub := range trusted {
		if ed25519.Verify(pub, msg, sig) {
			return KeyID(pub), nil
		}
	}
	return "", fmt.Errorf("%w: no trusted key (signed by %s) verifies it", ErrSignature, s.Signature.KeyID)
}
