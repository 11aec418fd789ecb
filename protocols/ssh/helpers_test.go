package sshproxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder/event"
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

// fakeGrants holds grants by user, target and role.
type fakeGrants struct {
	mu sync.Mutex
	m  map[string]broker.Grant
}

func (f *fakeGrants) set(g broker.Grant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]broker.Grant{}
	}
	f.m[g.User+"/"+g.Target+"/"+g.Role] = g
}

// remove drops every grant of user on target.
func (f *fakeGrants) remove(user, target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.m {
		if strings.HasPrefix(k, user+"/"+target+"/") {
			delete(f.m, k)
		}
	}
}

func (f *fakeGrants) ActiveGrantAs(_ context.Context, user, target, role string) (broker.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var best broker.Grant
	for k, g := range f.m {
		if strings.HasPrefix(k, user+"/"+target+"/") && (role == "" || g.Role == role) && g.EndsAt.After(best.EndsAt) {
			best = g
		}
	}
	if best.ID == "" {
		return best, errors.New("no active grant for " + target)
	}
	return best, nil
}

// fakeRecorder keeps recordings in memory. failStart refuses new
// recordings; failAfter makes a recording fail after that many events.
type fakeRecorder struct {
	mu        sync.Mutex
	recs      []*memRecording
	failStart error
	failAfter int
	// discard keeps no terminal data (benchmarks).
	discard bool
}

func (f *fakeRecorder) Start(_ context.Context, h event.Header) (Recording, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failStart != nil {
		return nil, f.failStart
	}
	r := &memRecording{header: h, failAfter: f.failAfter, discard: f.discard, done: make(chan struct{}), start: time.Now()}
	f.recs = append(f.recs, r)
	return r, nil
}

// discardData makes new recordings encode terminal data and keep none.
func (f *fakeRecorder) discardData() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.discard = true
}

// fail sets how new recordings fail: at start, or after n events.
func (f *fakeRecorder) fail(start error, after int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failStart, f.failAfter = start, after
}

func (f *fakeRecorder) last(t testing.TB) *memRecording {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.recs) == 0 {
		t.Fatal("no recording started")
	}
	return f.recs[len(f.recs)-1]
}

func (f *fakeRecorder) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recs)
}

type memRecording struct {
	header    event.Header
	start     time.Time
	done      chan struct{}
	mu        sync.Mutex
	events    []event.Event
	closed    bool
	failed    bool
	failAfter int
	n         int
	discard   bool
	buf       []byte
	// dataBytes counts recorded terminal bytes by kind, kept or not.
	dataBytes map[event.Kind]int64
}

func (r *memRecording) Output(ch uint32, p []byte) error {
	return r.Record(event.Event{Kind: event.KindOutput, Channel: ch, Data: p})
}

func (r *memRecording) Stderr(ch uint32, p []byte) error {
	return r.Record(event.Event{Kind: event.KindStderr, Channel: ch, Data: p})
}

func (r *memRecording) Input(ch uint32, p []byte) error {
	return r.Record(event.Event{Kind: event.KindInput, Channel: ch, Data: p})
}

func (r *memRecording) Record(e event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("recording closed")
	}
	r.n++
	if r.failed || r.failAfter > 0 && r.n > r.failAfter {
		return errors.New("spool disk full")
	}
	e.Offset = time.Since(r.start)
	if e.Kind.Terminal() {
		if r.dataBytes == nil {
			r.dataBytes = map[event.Kind]int64{}
		}
		r.dataBytes[e.Kind] += int64(len(e.Data))
	}
	if r.discard && e.Kind.Terminal() {
		// Encode as a recorder would, and keep nothing.
		r.buf = event.AppendData(r.buf[:0], e.Kind, e.Offset, e.Channel, e.Data)
		return nil
	}
	e.Data = bytes.Clone(e.Data)
	e.Args = append([]string(nil), e.Args...)
	r.events = append(r.events, e)
	return nil
}

// failNow fails the recording asynchronously, as a spool write error does.
func (r *memRecording) failNow() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.failed {
		r.failed = true
		close(r.done)
	}
}

func (r *memRecording) Done() <-chan struct{} { return r.done }

func (r *memRecording) Close() error { return r.end("closed", "", "") }

func (r *memRecording) Terminate(by, reason string) error { return r.end("terminated", by, reason) }

func (r *memRecording) end(state, by, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("recording closed twice")
	}
	r.closed = true
	r.events = append(r.events, event.Event{Kind: event.KindEnd, Offset: time.Since(r.start), Op: state, Name: by, Text: reason})
	return nil
}

// recorded returns how many terminal bytes of kind k were recorded.
func (r *memRecording) recorded(k event.Kind) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dataBytes[k]
}

func (r *memRecording) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *memRecording) snapshot() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

// terminal concatenates the recorded bytes of one kind.
func (r *memRecording) terminal(k event.Kind) string {
	var b strings.Builder
	for _, e := range r.snapshot() {
		if e.Kind == k {
			b.Write(e.Data)
		}
	}
	return b.String()
}

// find returns the events of kind k with op (any op when empty).
func (r *memRecording) find(k event.Kind, op string) []event.Event {
	var out []event.Event
	for _, e := range r.snapshot() {
		if e.Kind == k && (op == "" || e.Op == op) {
			out = append(out, e)
		}
	}
	return out
}

// waitClosed waits for the session's final event.
func (r *memRecording) waitClosed(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !r.isClosed() {
		if time.Now().After(deadline) {
			t.Fatal("recording was not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *memRecording) dump() string {
	var b strings.Builder
	for _, e := range r.snapshot() {
		d := e.Data
		if len(d) > 60 {
			d = d[:60]
		}
		fmt.Fprintf(&b, "%s ch=%d op=%q name=%q text=%q args=%q n=%d denied=%v data=%q\n", e.Kind, e.Channel, e.Op, e.Name, e.Text, e.Args, e.N, e.Denied, d)
	}
	return b.String()
}

type fakeAudit struct {
	mu      sync.Mutex
	entries []AuditEntry
}

func (f *fakeAudit) Audit(_ context.Context, e AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, e)
	return nil
}

func (f *fakeAudit) all() []AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]AuditEntry(nil), f.entries...)
}

func (f *fakeAudit) find(action string) []AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []AuditEntry
	for _, e := range f.entries {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

// env is a broker SSH proxy in front of a real sshd, with fakes for the
// broker's other parts and a user key for the real OpenSSH client.
type env struct {
	t      testing.TB
	sshd   *devstack.SSHD
	cfg    *config.Config
	proxy  *Proxy
	port   int
	grants *fakeGrants
	rec    *fakeRecorder
	audit  *fakeAudit
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
func newEnvRecorder(t testing.TB, rec recorder, edit ...func(*config.Config)) *env {
	t.Helper()
	return newEnvOptions(t, rec, nil, edit...)
}

// newEnvOptions is newEnvRecorder with a last say on the proxy's options.
func newEnvOptions(t testing.TB, rec recorder, opts func(*Options), edit ...func(*config.Config)) *env {
	t.Helper()
	return newEnvLogin(t, devstack.DefaultSSHLogin, rec, opts, edit...)
}

// newEnvLogin is newEnvOptions with the target's sshd letting in another
// login, for tests that change the login's dotfiles.
func newEnvLogin(t testing.TB, login string, rec recorder, opts func(*Options), edit ...func(*config.Config)) *env {
	t.Helper()
	for _, tool := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			devstack.Require(t, tool, "apt-get install -y openssh-client")
		}
	}
	e := &env{t: t, dir: t.TempDir(), grants: &fakeGrants{}, rec: &fakeRecorder{}, audit: &fakeAudit{}, creds: newFakeCreds(t)}
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
	e.grants.set(e.grant)
	if rec == nil {
		rec = e.rec
	}
	o := Options{
		HostKeyFile: filepath.Join(e.dir, "host_key"),
		Identities:  ids, Grants: e.grants, Targets: e.cfg, Credentials: e.creds, Recorder: rec, Audit: e.audit,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
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
