package sshca

import (
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestSignAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(path)
	if err != nil || string(again.PublicKey().Marshal()) != string(ca.PublicKey().Marshal()) {
		t.Fatalf("CA key did not persist: %v", err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	spub, _ := ssh.NewPublicKey(pub)
	cert, err := ca.Sign(spub, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	checker := ssh.CertChecker{IsUserAuthority: func(k ssh.PublicKey) bool {
		return string(k.Marshal()) == string(ca.PublicKey().Marshal())
	}}
	if err := checker.CheckCert("alice", cert); err != nil {
		t.Fatalf("certificate does not check: %v", err)
	}
	if err := checker.CheckCert("bob", cert); err == nil {
		t.Fatal("certificate valid for another principal")
	}
	if d := time.Until(time.Unix(int64(cert.ValidBefore), 0)); d > time.Hour || d < 59*time.Minute {
		t.Fatalf("validity %v, want 1h", d)
	}
	if _, err := ca.Sign(cert, "alice", time.Hour); err == nil {
		t.Fatal("signed a certificate as a key")
	}
}

// TestSignCapsLifetime: whatever lifetime is asked, a certificate is
// valid for at most MaxTTL, since it cannot be revoked.
func TestSignCapsLifetime(t *testing.T) {
	ca, err := LoadOrCreate(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	spub, _ := ssh.NewPublicKey(pub)
	cert, err := ca.Sign(spub, "alice", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(time.Unix(int64(cert.ValidBefore), 0)); d > MaxTTL {
		t.Fatalf("validity %v, want at most %v", d, MaxTTL)
	}
}
