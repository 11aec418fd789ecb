// Package sshca is the broker's own SSH user certificate authority: it
// signs short-lived certificates (custos login --ssh) that authenticate a
// user to the SSH proxy without registering a public key in config. The
// certificate's only principal is the Custos user name; it grants nothing
// by itself, since every connection still needs an active grant.
package sshca

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/keyfile"
)

// MaxTTL caps a certificate's lifetime, whatever the caller asks: a
// certificate cannot be revoked, so it must not outlive its token by
// much.
const MaxTTL = time.Hour

// CA signs user certificates.
type CA struct {
	signer ssh.Signer
	now    func() time.Time
}

// LoadOrCreate reads the CA's private key (OpenSSH format) from path, or
// generates an Ed25519 key there on first start (a key file: mode 0600,
// created exclusively, synced).
func LoadOrCreate(path string) (*CA, error) {
	b, err := keyfile.LoadOrCreate(path, func() ([]byte, error) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		block, err := ssh.MarshalPrivateKey(priv, "custos user CA")
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(block), nil
	})
	if err != nil {
		return nil, fmt.Errorf("sshca: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("sshca: parse %s: %w", path, err)
	}
	return &CA{signer: s, now: time.Now}, nil
}

// PublicKey is the CA key the SSH proxy trusts.
func (c *CA) PublicKey() ssh.PublicKey { return c.signer.PublicKey() }

// Sign certifies pub for user for ttl, at most MaxTTL. The certificate carries the usual
// interactive extensions; forwarding is still decided by the proxy's
// policy, not by the certificate.
func (c *CA) Sign(pub ssh.PublicKey, user string, ttl time.Duration) (*ssh.Certificate, error) {
	if user == "" || ttl <= 0 {
		return nil, errors.New("sshca: user and a positive ttl are required")
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, errors.New("sshca: give a plain public key, not a certificate")
	}
	ttl = min(ttl, MaxTTL)
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	now := c.now()
	cert := &ssh.Certificate{
		Key: pub, Serial: binary.BigEndian.Uint64(serial[:]), CertType: ssh.UserCert,
		KeyId:           "custos:user=" + user,
		ValidPrincipals: []string{user},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, c.signer); err != nil {
		return nil, fmt.Errorf("sshca: sign: %w", err)
	}
	return cert, nil
}
