package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
	"github.com/custos-pam/custos/deploy/devstack"
)

// sshTarget starts a real sshd that trusts Vault's SSH CA and points the
// config's host1 target at it, pinning its host key.
func (e *env) sshTarget(t *testing.T) (*devstack.SSHD, *config.Target) {
	t.Helper()
	s, err := e.root.Logical().Read("ssh/config/ca")
	if err != nil || s == nil {
		t.Fatalf("read SSH CA: %v", err)
	}
	sshd := devstack.StartSSHD(t, []byte(s.Data["public_key"].(string)))
	tgt, _ := e.cfg.FindTarget("host1")
	tgt.Address = sshd.Addr()
	tgt.SSH.HostKeys = []string{sshd.HostKeyLine}
	return sshd, tgt
}

func dialTarget(tgt *config.Target, cert creds.SSHCert) (*ssh.Client, error) {
	return ssh.Dial("tcp", tgt.Address, &ssh.ClientConfig{
		User:            cert.Login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(cert.Signer)},
		HostKeyCallback: creds.HostKeyCallback(*tgt),
		Timeout:         5 * time.Second,
	})
}

// A certificate signed for one session logs in to a real sshd that trusts
// the Vault CA, names user, grant and session, ends no later than the
// grant, and carries permit-pty only when the role allows a shell.
func TestSSHCertificateForSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sshd, tgt := e.sshTarget(t)
	g := e.grant(t, "alice", "host1", "ops", 90*time.Second)

	cert, err := e.issuer.SSHForSession(ctx, g, "ses_ssh1")
	if err != nil {
		t.Fatal(err)
	}
	c := cert.Certificate
	if cert.ValidBefore.After(g.EndsAt) || time.Unix(int64(c.ValidBefore), 0).After(g.EndsAt) {
		t.Errorf("certificate valid until %s, after the grant's end %s", cert.ValidBefore, g.EndsAt)
	}
	if want := "custos:user=alice:grant=" + g.ID + ":session=ses_ssh1"; c.KeyId != want {
		t.Errorf("key id %q, want %q", c.KeyId, want)
	}
	if len(c.ValidPrincipals) != 1 || c.ValidPrincipals[0] != sshd.Login {
		t.Errorf("principals %v, want [%s]", c.ValidPrincipals, sshd.Login)
	}
	if _, ok := c.Extensions["permit-pty"]; !ok || len(c.Extensions) != 1 {
		t.Errorf("extensions %v, want only permit-pty", c.Extensions)
	}
	if c.Key.Type() != ssh.KeyAlgoED25519 {
		t.Errorf("session key is %s, want ed25519", c.Key.Type())
	}

	client, err := dialTarget(tgt, cert)
	if err != nil {
		t.Fatalf("sshd refused the certificate: %v\n%s", err, tail(sshd.LogPath()))
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Run("true"); err != nil {
		t.Fatalf("run true: %v", err)
	}
	// The key id reaches the target's auth log.
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(tail(sshd.LogPath()), c.KeyId) {
		if time.Now().After(deadline) {
			t.Errorf("key id %q not in sshd's log", c.KeyId)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if recs := e.auditRecords(t, "creds.issue"); !hasAudit(recs, g.ID, broker.OutcomeSuccess) {
		t.Error("certificate issue not audited")
	}

	// A role without a shell gets no permit-pty, and sshd refuses a PTY.
	nb := e.grant(t, "alice", "host1", "batch", 90*time.Second)
	bc, err := e.issuer.SSHForSession(ctx, nb, "ses_ssh2")
	if err != nil {
		t.Fatal(err)
	}
	if len(bc.Certificate.Extensions) != 0 {
		t.Errorf("no-shell certificate has extensions %v", bc.Certificate.Extensions)
	}
	bclient, err := dialTarget(tgt, bc)
	if err != nil {
		t.Fatal(err)
	}
	defer bclient.Close()
	bs, err := bclient.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := bs.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err == nil {
		t.Error("sshd granted a PTY to a certificate without permit-pty")
	}
	bs.Close()

	// A short grant caps the certificate.
	short := e.grant(t, "alice", "host1", "ops", 20*time.Second)
	sc, err := e.issuer.SSHForSession(ctx, short, "ses_ssh3")
	if err != nil {
		t.Fatal(err)
	}
	if sc.ValidBefore.After(short.EndsAt) {
		t.Errorf("certificate valid until %s, after the short grant's end %s", sc.ValidBefore, short.EndsAt)
	}

	// An ended grant gets no certificate.
	ended := e.endGrant(t, short, broker.GrantRevoked, true)
	if _, err := e.issuer.SSHForSession(ctx, ended, "ses_ssh4"); !errors.Is(err, creds.ErrGrantEnded) {
		t.Errorf("certificate for a revoked grant: %v", err)
	}
}

// A role's shell and port-forwarding settings decide the certificate's
// extensions, and the real sshd (AllowTcpForwarding local) forwards a
// local port for a Vault certificate only when it carries
// permit-port-forwarding.
func TestSSHCertificatePortForwarding(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sshd, tgt := e.sshTarget(t)
	no := false
	cfg := *e.cfg
	cfg.Targets = slices.Clone(e.cfg.Targets)
	host1, _ := cfg.FindTarget("host1")
	host1.Roles = append(slices.Clone(host1.Roles),
		config.Role{Name: "fwd", Login: devstack.DefaultSSHLogin, VaultRole: "ops", AllowPortForward: true},
		config.Role{Name: "tunnel", Login: devstack.DefaultSSHLogin, VaultRole: "ops", AllowPortForward: true, Shell: &no},
	)
	_, issuer := e.start(t, &cfg)
	dest := devstack.EchoServer(t)

	for _, tc := range []struct {
		role    string
		exts    []string
		forward bool
	}{
		{role: "ops", exts: []string{"permit-pty"}},
		{role: "batch", exts: []string{}},
		{role: "fwd", exts: []string{"permit-port-forwarding", "permit-pty"}, forward: true},
		{role: "tunnel", exts: []string{"permit-port-forwarding"}, forward: true},
	} {
		t.Run(tc.role, func(t *testing.T) {
			g := e.grant(t, "alice", "host1", tc.role, 90*time.Second)
			sessionID := "ses_fwd_" + tc.role
			cert, err := issuer.SSHForSession(ctx, g, sessionID)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(cert.Certificate.Extensions))
			if !slices.Equal(got, tc.exts) {
				t.Fatalf("extensions %v, want %v", got, tc.exts)
			}
			var audited []any
			for _, r := range e.auditRecords(t, "creds.issue") {
				var d struct {
					SessionID  string `json:"session_id"`
					Extensions []any  `json:"extensions"`
				}
				if json.Unmarshal(r.Details, &d) == nil && d.SessionID == sessionID {
					audited = d.Extensions
				}
			}
			if len(audited) != len(tc.exts) {
				t.Errorf("audited extensions %v, want %v", audited, tc.exts)
			}

			client, err := dialTarget(tgt, cert)
			if err != nil {
				t.Fatalf("sshd refused the certificate: %v\n%s", err, tail(sshd.LogPath()))
			}
			defer client.Close()
			c, err := client.Dial("tcp", dest)
			if !tc.forward {
				if err == nil {
					c.Close()
					t.Fatal("sshd forwarded a port for a certificate without permit-port-forwarding")
				}
				return
			}
			if err != nil {
				t.Fatalf("forward through sshd: %v\n%s", err, tail(sshd.LogPath()))
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, "ping\n")
			b, _ := io.ReadAll(c)
			if string(b) != "echo:ping\n" {
				t.Fatalf("through the forward: %q", b)
			}
		})
	}
}

// The broker refuses a target whose host key is not the pinned one.
func TestSSHUnknownHostKeyRefused(t *testing.T) {
	e := newEnv(t)
	_, tgt := e.sshTarget(t)
	other := devstack.StartSSHD(t, randomCAKey(t))
	g := e.grant(t, "alice", "host1", "ops", time.Minute)
	cert, err := e.issuer.SSHForSession(context.Background(), g, "ses_hk")
	if err != nil {
		t.Fatal(err)
	}
	wrong := *tgt
	wrong.SSH.HostKeys = []string{other.HostKeyLine}
	_, err = dialTarget(&wrong, cert)
	if !errors.Is(err, creds.ErrUnknownHostKey) {
		t.Fatalf("dial with the wrong pinned key: %v, want ErrUnknownHostKey", err)
	}
	// The same certificate is accepted once the right key is pinned.
	c, err := dialTarget(tgt, cert)
	if err != nil {
		t.Fatalf("dial with the right pinned key: %v", err)
	}
	c.Close()
}

func randomCAKey(t *testing.T) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(k)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
