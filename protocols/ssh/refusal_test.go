package sshproxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/protocols/lifecycle"
)

// TestRefusedAuthCannotFloodAudit: OpenSSH clients with an unregistered
// key and a 2 kB user name are refused without any audit record (they
// never get past the key check); alice, identified by her key, asking for
// a made-up 2 kB target gets a record each, the target bounded.
func TestRefusedAuthCannotFloodAudit(t *testing.T) {
	e := newEnv(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "stranger")
	if err != nil {
		t.Fatal(err)
	}
	stranger := filepath.Join(e.dir, "stranger")
	if err := os.WriteFile(stranger, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("m", 2000)
	const n = 5
	for range n {
		if r := run(t, nil, "ssh", e.withKey(e.sshArgs(long, "true"), stranger)...); r.code == 0 {
			t.Fatal("an unregistered key was let in")
		}
	}
	if got := e.audit.Find(lifecycle.ActionRefused); len(got) != 0 {
		t.Fatalf("unregistered keys produced %d session.refused records", len(got))
	}
	for range n {
		if r := e.ssh(long, "true"); r.code == 0 {
			t.Fatal("an unknown target was reached")
		}
	}
	got := e.audit.Wait(t, lifecycle.ActionRefused, "denied", n)
	if len(got) != n {
		t.Fatalf("session.refused records = %d, want %d", len(got), n)
	}
	for _, r := range got {
		if r.Actor != testUser || len(r.Target) > lifecycle.MaxAuditName || !strings.HasSuffix(r.Target, "…") ||
			strings.Contains(r.Reason+r.Target, strings.Repeat("m", 100)) {
			t.Errorf("record actor %q target %q reason %.100q", r.Actor, r.Target, r.Reason)
		}
		for k, v := range r.Details {
			if s, ok := v.(string); ok && len(s) > lifecycle.MaxAuditName && k != "client_addr" {
				t.Errorf("detail %s is %d bytes", k, len(s))
			}
		}
	}
}
