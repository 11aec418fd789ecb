package sshproxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/keyfile"
)

// LoadOrCreateHostKey reads the broker's host key from path, generating an
// Ed25519 key there (a key file: mode 0600, created exclusively, synced)
// when the file does not exist, so clients see the same host key across
// restarts.
func LoadOrCreateHostKey(path string) (ssh.Signer, error) {
	b, err := keyfile.LoadOrCreate(path, func() ([]byte, error) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		block, err := ssh.MarshalPrivateKey(priv, "custos broker host key")
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(block), nil
	})
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return s, nil
}
