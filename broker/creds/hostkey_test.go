package creds

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
)

func newKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func line(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }

func hostCert(t *testing.T, ca ssh.Signer, host ssh.PublicKey, principals ...string) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key: host, KeyId: "host", CertType: ssh.HostCert, ValidPrincipals: principals,
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHostKeyCallback(t *testing.T) {
	host, other, ca, otherCA := newKey(t), newKey(t), newKey(t), newKey(t)
	keyFile := filepath.Join(t.TempDir(), "host.pub")
	if err := os.WriteFile(keyFile, []byte("# pinned\n"+line(host.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	tests := []struct {
		name    string
		ssh     config.TargetSSH
		key     ssh.PublicKey
		wantErr error // nil: accepted
	}{
		{"pinned key accepted", config.TargetSSH{HostKeys: []string{line(host.PublicKey())}}, host.PublicKey(), nil},
		{"pinned from file", config.TargetSSH{HostKeys: []string{"file:" + keyFile}}, host.PublicKey(), nil},
		{"unpinned key refused", config.TargetSSH{HostKeys: []string{line(host.PublicKey())}}, other.PublicKey(), ErrUnknownHostKey},
		{"cert of pinned key accepted", config.TargetSSH{HostKeys: []string{line(host.PublicKey())}},
			hostCert(t, otherCA, host.PublicKey(), "127.0.0.1"), nil},
		{"host CA cert accepted", config.TargetSSH{HostCA: line(ca.PublicKey())},
			hostCert(t, ca, other.PublicKey(), "127.0.0.1"), nil},
		{"host CA cert for another host refused", config.TargetSSH{HostCA: line(ca.PublicKey())},
			hostCert(t, ca, other.PublicKey(), "db.example"), ErrUnknownHostKey},
		{"cert from another CA refused", config.TargetSSH{HostCA: line(ca.PublicKey())},
			hostCert(t, otherCA, other.PublicKey(), "127.0.0.1"), ErrUnknownHostKey},
		{"plain key with only a CA refused", config.TargetSSH{HostCA: line(ca.PublicKey())}, host.PublicKey(), ErrUnknownHostKey},
		{"nothing configured refuses", config.TargetSSH{}, host.PublicKey(), errors.New("neither")},
		{"bad pinned line refuses", config.TargetSSH{HostKeys: []string{"ssh-ed25519 notbase64"}}, host.PublicKey(), errors.New("host_keys[0]")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := HostKeyCallback(config.Target{Name: "db1", Kind: "ssh", SSH: tt.ssh})
			err := cb("127.0.0.1:2222", addr, tt.key)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr != nil && err == nil:
				t.Fatal("accepted, want refusal")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()):
				t.Fatalf("error %q, want %q", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "db1") {
				t.Errorf("error %q does not name the target", err)
			}
		})
	}
}
