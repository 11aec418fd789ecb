// Package keywrap protects recording data keys. Each recorded session gets a
// fresh AES-256 data key; a wrapper returns it together with a wrapped form
// that is stored in the session's manifest and can only be unwrapped by
// the wrapping key's holder: Vault Transit (Transit) or, without Vault, a
// local key file (Local).
package keywrap

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/custos-pam/custos/broker/keyfile"
)

// DataKeySize is the length of a data key: AES-256.
const DataKeySize = 32

// Wrapped is a wrapped data key as kept in a manifest.
type Wrapped struct {
	// Wrapper names the mechanism: "local" or "vault-transit".
	Wrapper string `json:"wrapper"`
	// KeyID names the wrapping key: the local key's fingerprint or
	// "<mount>/<key>" in Vault.
	KeyID string `json:"key_id"`
	// Ciphertext is the wrapped key in the wrapper's own text format.
	Ciphertext string `json:"ciphertext"`
}

// ErrWrongWrapper is returned when a wrapped key was made by another
// wrapper or wrapping key.
var ErrWrongWrapper = errors.New("keywrap: key was wrapped by a different wrapper")

// Local wraps data keys with AES-256-GCM under a key kept in a file.
type Local struct {
	aead cipher.AEAD
	id   string
}

// localAAD binds wrapped keys to their purpose.
const localAAD = "custos recording data key v1"

// LoadLocal reads the key file at path, creating it with a new random key
// (a key file: mode 0600, created exclusively, synced) when it does not
// exist. The file holds the key in base64.
func LoadLocal(path string) (*Local, error) {
	b, err := keyfile.LoadOrCreate(path, newKeyFile)
	if err != nil {
		return nil, fmt.Errorf("keywrap: local key %s: %w", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != DataKeySize {
		return nil, fmt.Errorf("keywrap: local key %s: not a base64 32-byte key", path)
	}
	return NewLocal(key)
}

// NewLocal returns a wrapper for a 32-byte key.
func NewLocal(key []byte) (*Local, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("keywrap: local key must be %d bytes", DataKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	sum := sha256.Sum256(append([]byte("custos key id:"), key...))
	return &Local{aead: aead, id: "local:" + hex.EncodeToString(sum[:8])}, nil
}

// newKeyFile returns a new random key as the key file holds it.
func newKeyFile() ([]byte, error) {
	key := make([]byte, DataKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n"), nil
}

// KeyID returns the key's fingerprint, "local:" and 16 hex digits.
func (l *Local) KeyID() string { return l.id }

// Wrap returns the wrapped form of a data key.
func (l *Local) Wrap(key []byte) (Wrapped, error) {
	nonce := make([]byte, l.aead.NonceSize(), l.aead.NonceSize()+len(key)+l.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return Wrapped{}, fmt.Errorf("keywrap: %w", err)
	}
	ct := l.aead.Seal(nonce, nonce, key, []byte(localAAD))
	return Wrapped{Wrapper: "local", KeyID: l.id, Ciphertext: "local:v1:" + base64.StdEncoding.EncodeToString(ct)}, nil
}

// NewDataKey returns a fresh data key and its wrapped form.
// The context is unused; it matches Transit's signature.
func (l *Local) NewDataKey(context.Context) ([]byte, Wrapped, error) {
	key := make([]byte, DataKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, Wrapped{}, fmt.Errorf("keywrap: %w", err)
	}
	w, err := l.Wrap(key)
	return key, w, err
}

// Unwrap returns the data key inside w.
func (l *Local) Unwrap(_ context.Context, w Wrapped) ([]byte, error) {
	if w.Wrapper != "local" || w.KeyID != l.id {
		return nil, fmt.Errorf("%w: %s %s", ErrWrongWrapper, w.Wrapper, w.KeyID)
	}
	raw, ok := strings.CutPrefix(w.Ciphertext, "local:v1:")
	if !ok {
		return nil, errors.New("keywrap: local: unknown ciphertext format")
	}
	ct, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(ct) < l.aead.NonceSize() {
		return nil, errors.New("keywrap: local: malformed ciphertext")
	}
	n := l.aead.NonceSize()
	key, err := l.aead.Open(nil, ct[:n], ct[n:], []byte(localAAD))
	if err != nil {
		return nil, errors.New("keywrap: local: unwrap failed")
	}
	if len(key) != DataKeySize {
		return nil, errors.New("keywrap: local: wrapped key has the wrong size")
	}
	return key, nil
}
