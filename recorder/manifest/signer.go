package manifest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/custos-pam/custos/broker/keyfile"
)

// Signer holds the broker's Ed25519 manifest signing key.
type Signer struct {
	key ed25519.PrivateKey
}

// LoadSigner reads a PEM (PKCS #8) Ed25519 private key from path, creating
// the file (a key file: mode 0600, created exclusively, synced) with a new key when
// it does not exist.
func LoadSigner(path string) (*Signer, error) {
	b, err := keyfile.LoadOrCreate(path, newSigningKey)
	if err != nil {
		return nil, fmt.Errorf("manifest: signing key %s: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("manifest: signing key %s: no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("manifest: signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("manifest: signing key %s: not an Ed25519 key", path)
	}
	return &Signer{key: ek}, nil
}

// NewSigner wraps an existing private key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// newSigningKey returns a new Ed25519 key, PEM (PKCS #8) encoded.
func newSigningKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Public returns the public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// KeyID returns the public key's fingerprint.
func (s *Signer) KeyID() string { return KeyID(s.Public()) }

// KeyID returns "ed25519:" and the first 16 hex digits of the SHA-256 of
// the public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}
