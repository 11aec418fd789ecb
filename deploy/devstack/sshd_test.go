package devstack

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// extCert makes a key pair and a certificate for principal signed by ca
// carrying exactly the given extensions.
func extCert(t *testing.T, ca ssh.Signer, principal string, exts ...string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	perms := map[string]string{}
	for _, e := range exts {
		perms[e] = ""
	}
	cert := &ssh.Certificate{
		Key: key.PublicKey(), CertType: ssh.UserCert, KeyId: "devstack-test", ValidPrincipals: []string{principal},
		ValidAfter:  uint64(time.Now().Add(-time.Minute).Unix()),
		ValidBefore: uint64(time.Now().Add(10 * time.Minute).Unix()),
		Permissions: ssh.Permissions{Extensions: perms},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func dialSSHD(t *testing.T, s *SSHD, signer ssh.Signer) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{
		User: s.Login, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("login: %v\n%s", err, logTail(s.LogPath(), 20))
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The development target forwards local ports for certificates that carry
// permit-port-forwarding and only for them, never remote ports, and
// accepts the variables of TargetAcceptEnv and no others.
func TestSSHDForwardingAndEnv(t *testing.T) {
	ca, caPub := newCA(t)
	s := StartSSHD(t, caPub)
	dest := EchoServer(t)

	fwd := dialSSHD(t, s, extCert(t, ca, s.Login, "permit-pty", "permit-port-forwarding"))
	c, err := fwd.Dial("tcp", dest)
	if err != nil {
		t.Fatalf("local forward with permit-port-forwarding: %v\n%s", err, logTail(s.LogPath(), 20))
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "ping\n")
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "echo:ping\n" {
		t.Fatalf("through the forward: %q", got)
	}
	if ln, err := fwd.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
		t.Error("remote forwarding accepted (AllowTcpForwarding must be local)")
	}

	plain := dialSSHD(t, s, extCert(t, ca, s.Login, "permit-pty"))
	if c, err := plain.Dial("tcp", dest); err == nil {
		c.Close()
		t.Error("local forward accepted for a certificate without permit-port-forwarding")
	}

	sess, err := plain.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for _, name := range strings.Fields(TargetAcceptEnv) {
		name = strings.ReplaceAll(name, "*", "X")
		if err := sess.Setenv(name, "v"); err != nil {
			t.Errorf("setenv %s: %v", name, err)
		}
	}
	if err := sess.Setenv("CUSTOS_OTHER", "no"); err == nil {
		t.Error("setenv CUSTOS_OTHER accepted")
	}
	out, err := sess.CombinedOutput(`echo "$CUSTOS_TEST_X/$LC_X/$CUSTOS_OTHER"`)
	if err != nil || string(out) != "v/v/\n" {
		t.Fatalf("environment on the target: %q, %v", out, err)
	}
}
