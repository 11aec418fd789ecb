package backup

import (
	"crypto/rand"
	"encoding/json"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// MinPassphrase is the shortest passphrase a backup accepts.
const MinPassphrase = 16

// Argon2id parameters for new backups (RFC 9106's second recommended
// option). A restore takes them from keys.enc within maxMemoryKiB.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
	maxMemoryKiB = 1024 * 1024
	maxTime      = 16
)

// sealedKeys is keys.enc: the key files under a passphrase-derived key.
type sealedKeys struct {
	KDF        string `json:"kdf"`
	Time       uint32 `json:"time"`
	MemoryKiB  uint32 `json:"memory_kib"`
	Threads    uint8  `json:"threads"`
	Salt       []byte `json:"salt"`
	Cipher     string `json:"cipher"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// keyBundle is the plaintext inside keys.enc.
type keyBundle struct {
	Keys map[string][]byte `json:"keys"`
	// DataKey encrypts the table files.
	DataKey []byte `json:"data_key"`
}

// sealKeys encrypts the key files with a key derived from passphrase;
// the backup id is bound as associated data, so keys.enc cannot be moved
// to another backup.
func sealKeys(passphrase []byte, backupID string, keys map[string][]byte, dataKey []byte) ([]byte, error) {
	if len(passphrase) < MinPassphrase {
		return nil, fmt.Errorf("passphrase must have at least %d characters", MinPassphrase)
	}
	s := sealedKeys{KDF: "argon2id", Time: argonTime, MemoryKiB: argonMemory, Threads: argonThreads,
		Cipher: "xchacha20poly1305", Salt: make([]byte, 16), Nonce: make([]byte, chacha20poly1305.NonceSizeX)}
	if _, err := rand.Read(s.Salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(s.Nonce); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(keyBundle{Keys: keys, DataKey: dataKey})
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	k := argon2.IDKey(passphrase, s.Salt, s.Time, s.MemoryKiB, s.Threads, chacha20poly1305.KeySize)
	defer clear(k)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	s.Ciphertext = aead.Seal(nil, s.Nonce, plain, []byte(backupID))
	return json.MarshalIndent(s, "", "  ")
}

// openKeys decrypts keys.enc and returns the key files and the data key.
// A wrong passphrase and an altered file both return ErrPassphrase: the
// AEAD cannot tell them apart.
func openKeys(passphrase []byte, backupID string, raw []byte) (map[string][]byte, []byte, error) {
	var s sealedKeys
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, nil, tampered("keys.enc is not a sealed key file")
	}
	switch {
	case s.KDF != "argon2id" || s.Cipher != "xchacha20poly1305":
		return nil, nil, tampered("keys.enc uses %q/%q, want argon2id/xchacha20poly1305", s.KDF, s.Cipher)
	case s.Time == 0 || s.Time > maxTime || s.MemoryKiB < 8*uint32(max(s.Threads, 1)) || s.MemoryKiB > maxMemoryKiB || s.Threads == 0:
		return nil, nil, tampered("keys.enc has out-of-range Argon2id parameters")
	case len(s.Nonce) != chacha20poly1305.NonceSizeX || len(s.Salt) < 16:
		return nil, nil, tampered("keys.enc has a bad nonce or salt")
	}
	k := argon2.IDKey(passphrase, s.Salt, s.Time, s.MemoryKiB, s.Threads, chacha20poly1305.KeySize)
	defer clear(k)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, nil, err
	}
	plain, err := aead.Open(nil, s.Nonce, s.Ciphertext, []byte(backupID))
	if err != nil {
		return nil, nil, ErrPassphrase
	}
	defer clear(plain)
	var b keyBundle
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, nil, tampered("keys.enc holds no key bundle")
	}
	if len(b.DataKey) != dataKeySize {
		clearKeys(b.Keys)
		return nil, nil, tampered("%v", errNoDataKey)
	}
	return b.Keys, b.DataKey, nil
}
