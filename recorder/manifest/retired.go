package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/custos-pam/custos/broker/keyfile"
)

// RetiredSuffix ends the file name of a retired key's public half.
const RetiredSuffix = ".pub"

// MarshalPublicKey encodes an Ed25519 public key as PEM (PKIX "PUBLIC
// KEY"), the form of a retired key's file.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("manifest: public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// parsePublicKey reads one PEM Ed25519 public key.
func parsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an Ed25519 key")
	}
	return pub, nil
}

// LoadRetiredKeys reads the public halves of retired signing keys, every
// *.pub file in dir (RotateSigner writes them there). Recordings and
// audit checkpoints signed with them still verify; nothing new is signed
// with them. A missing dir holds none; a file that is not an Ed25519
// public key is an error, so a damaged file is not silently distrusted.
func LoadRetiredKeys(dir string) ([]ed25519.PublicKey, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+RetiredSuffix))
	if err != nil {
		return nil, fmt.Errorf("manifest: retired keys %s: %w", dir, err)
	}
	sort.Strings(names)
	var keys []ed25519.PublicKey
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("manifest: retired key: %w", err)
		}
		pub, err := parsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("manifest: retired key %s: %w", name, err)
		}
		keys = append(keys, pub)
	}
	return keys, nil
}

// Rotation is what RotateSigner did.
type Rotation struct {
	// Old and New are the key IDs (KeyID) of the retired and the new key.
	Old, New string
	// Retired is the file holding the retired key's public half.
	Retired string
}

// RotateSigner replaces the signing key file at path (which must exist)
// with a new key, after writing the old key's public half to retiredDir
// as <key id>.pub, where LoadRetiredKeys finds it. The new key is written
// beside path and renamed over it, so path always holds a whole key. It
// must not run while a broker uses the key.
func RotateSigner(path, retiredDir string) (Rotation, error) {
	if _, err := os.Stat(path); err != nil {
		return Rotation{}, fmt.Errorf("manifest: rotate signing key: %w", err)
	}
	old, err := LoadSigner(path)
	if err != nil {
		return Rotation{}, err
	}
	pubPEM, err := MarshalPublicKey(old.Public())
	if err != nil {
		return Rotation{}, err
	}
	rot := Rotation{Old: old.KeyID(),
		Retired: filepath.Join(retiredDir, strings.TrimPrefix(old.KeyID(), "ed25519:")+RetiredSuffix)}
	if err := keyfile.Create(rot.Retired, pubPEM); errors.Is(err, fs.ErrExist) {
		// A rotation that stopped after this step: the file must hold
		// this very key.
		if b, rerr := os.ReadFile(rot.Retired); rerr != nil || !bytes.Equal(b, pubPEM) {
			return Rotation{}, fmt.Errorf("manifest: rotate signing key: %s exists and holds another key", rot.Retired)
		}
	} else if err != nil {
		return Rotation{}, fmt.Errorf("manifest: rotate signing key: %w", err)
	}
	keyPEM, err := newSigningKey()
	if err != nil {
		return Rotation{}, fmt.Errorf("manifest: rotate signing key: %w", err)
	}
	next := path + ".new"
	_ = os.Remove(next)
	if err := keyfile.Create(next, keyPEM); err != nil {
		return Rotation{}, fmt.Errorf("manifest: rotate signing key: %w", err)
	}
	if err := os.Rename(next, path); err != nil {
		return Rotation{}, fmt.Errorf("manifest: rotate signing key: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	fresh, err := LoadSigner(path)
	if err != nil {
		return Rotation{}, err
	}
	rot.New = fresh.KeyID()
	return rot, nil
}
