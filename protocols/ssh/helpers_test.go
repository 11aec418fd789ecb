package sshproxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// testCA is the upstream user CA sshd trusts; fakeCreds signs with it as
// Vault's SSH engine would.
type fakeCreds struct {
	ca    ssh.Signer
	login string
	mu    sync.Mutex
	calls []string
}

func newFakeCreds(t testing.TB) *fakeCreds {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCreds{ca: s}
}

func (f *fakeCreds) caLine() []byte { return ssh.MarshalAuthorizedKey(f.ca.PublicKey()) }

func (f *fakeCreds) SSHSigner(_ context.Context, g broker.Grant, sessionID string) (ssh.Signer, error) {
	f.mu.Lock()
	f.calls = append(f.calls, g.ID+"/"+sessionID)
	f.mu.Unlock()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cert := &ssh.Certificate{
		Key: s.PublicKey(), CertType: ssh.UserCert, KeyId: sessionID, ValidPrincipals: []string{f.login},
		ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(10 * time.Minute).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": "", "permit-port-forwarding": ""}},
	}
	if err := cert.SignCert(rand.Reader, f.ca); err != nil {
		return nil, err
	}
	return ssh.NewCertSigner(cert, s)
}

// env is a broker SSH proxy in front of a real sshd, with fakes for the
// broker's other parts and a user key for the real OpenSSH client.
type env struct {
	t      testing.TB
	sshd   *devstack.SSHD
	cfg    *config.Config
	proxy  *Proxy
	port   int
	grants *lifecycletest.Grants
	rec    *lifecycletest.Recorder
	audit  *lifecycletest.Audit
	creds  *fakeCreds
	key    string // the user's private key file
	dir    string
	grant  broker.Grant
}

const (
	testUser   = "alice"
	testTarget = "web-1"
	testRole   = "ops"
)

// newEnv starts sshd and a proxy. Options may edit the config before the
// proxy starts; the user alice has an active grant on web-1 unless noGrant.
func newEnv(t testing.TB, edit ...func(*config.Config)) *env {
	t.Helper()
	return newEnvRecorder(t, nil, edit...)
}

// newEnvRecorder is newEnv with another recorder than the in-memory fake.
func newEnvRecorder(t testing.TB, rec lifecycle.Recorder, edit ...func(*config.Config)) *env {
	t.Helper()
	return newEnvOptions(t, rec, nil, edit...)
}

// newEnvOptions is newEnvRecorder with a last say on the proxy's options.
func newEnvOptions(t testing.TB, rec lifecycle.Recorder, opts func(*Options), edit ...func(*config.Config)) *env {
	t.Helper()
	return newEnvLogin(t, devstack.DefaultSSHLogin, rec, opts, edit...)
}

// newEnvLogin is newEnvOptions with the target's sshd letting in another
// login, for tests that change the login's dotfiles.
func newEnvLogin(t testing.TB, login string, rec lifecycle.Recorder, opts func(*Options), edit ...func(*config.Config)) *env {
	t.Helper()
	for _, tool := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			devstack.Require(t, tool, "apt-get install -y openssh-client")
		}
	}
	e := &env{t: t, dir: t.TempDir(), grants: &lifecycletest.Grants{}, rec: &lifecycletest.Recorder{}, audit: &lifecycletest.Audit{}, creds: newFakeCreds(t)}
	e.sshd = devstack.StartSSHDLogin(t, e.creds.caLine(), login)
	e.creds.login = e.sshd.Login

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "alice")
	if err != nil {
		t.Fatal(err)
	}
	e.key = filepath.Join(e.dir, "alice")
	if err := os.WriteFile(e.key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = &config.Config{
		Users: []config.User{{Name: testUser, SSHKeys: []string{string(ssh.MarshalAuthorizedKey(pub))}}},
		Targets: []config.Target{{
			Name: testTarget, Kind: "ssh", Address: e.sshd.Addr(),
			SSH:   config.TargetSSH{HostKeys: []string{e.sshd.HostKeyLine}},
			Roles: []config.Role{{Name: testRole, Login: e.sshd.Login}},
		}},
	}
	for _, f := range edit {
		f(e.cfg)
	}
	ids, err := NewKeyIdentities(e.cfg.Users)
	if err != nil {
		t.Fatal(err)
	}
	e.grant = broker.Grant{ID: broker.NewID("grt"), User: testUser, Target: testTarget, Role: testRole,
		StartsAt: time.Now().Add(-time.Minute), EndsAt: time.Now().Add(time.Hour), State: broker.GrantActive,
		Approvers: []string{"bob"}, Reason: "INC-1"}
	e.grants.Set(e.grant)
	if rec == nil {
		rec = e.rec
	}
	o := Options{
		HostKeyFile: filepath.Join(e.dir, "host_key"),
		Identities:  ids, Grants: e.grants, Targets: e.cfg, Credentials: e.creds,
		Options: lifecycle.Options{Recorder: rec, Audit: e.audit, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
	}
	if opts != nil {
		opts(&o)
	}
	e.proxy, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = ln.Addr().(*net.TCPAddr).Port
	served := make(chan error, 1)
	go func() { served <- e.proxy.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		e.proxy.Close()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return e
}

// sshOpts are the client options every test uses.
func (e *env) sshOpts() []string {
	return []string{"-F", "/dev/null", "-i", e.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10"}
}

// sshArgs builds `ssh -p PORT ... USER@127.0.0.1 args...`.
func (e *env) sshArgs(user string, args ...string) []string {
	out := append([]string{"-p", strconv.Itoa(e.port)}, e.sshOpts()...)
	return append(append(out, user+"@127.0.0.1"), args...)
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// run runs a client tool to completion with a timeout.
func run(t testing.TB, stdin io.Reader, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// withKey returns args with the user's key file replaced by key.
func (e *env) withKey(args []string, key string) []string {
	out := slices.Clone(args)
	out[slices.Index(out, e.key)] = key
	return out
}

// ssh runs ssh through the proxy as alice to TARGET (or LOGIN@TARGET).
func (e *env) ssh(user string, args ...string) result {
	e.t.Helper()
	return run(e.t, nil, "ssh", e.sshArgs(user, args...)...)
}

// remoteDir makes a directory the target login may write to.
func (e *env) remoteDir() string {
	e.t.Helper()
	d, err := os.MkdirTemp("", "custos-ssh-test-")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
