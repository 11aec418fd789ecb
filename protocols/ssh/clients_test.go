package sshproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
	"github.com/custos-pam/custos/recorder/event"
)

// debianPython is Debian's interpreter, whose python3-paramiko is the
// version Ansible and Fabric on Debian use (a python3 earlier in PATH may
// be another installation without it).
const debianPython = "/usr/bin/python3"

// newClientsEnv is newEnv with the proxy's log kept, so a test can read
// which transport algorithms a client negotiated.
func newClientsEnv(t *testing.T) (*env, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	e := newEnvOptions(t, nil, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	return e, logs
}

// negotiated returns the transport the proxy logged for the client whose
// version starts with client, e.g. "cipher=aes128-ctr mac=hmac-sha2-256".
func negotiated(t *testing.T, logs *syncBuffer, client string) string {
	t.Helper()
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "ssh client transport") && strings.Contains(l, `client_version=`+strconv.Quote(client)) ||
			strings.Contains(l, "ssh client transport") && strings.Contains(l, "client_version="+client) {
			return l
		}
	}
	t.Fatalf("no transport logged for client %s:\n%s", client, logs.String())
	return ""
}

// TestCryptoProfileSSHAudit runs ssh-audit against the proxy, and looks
// up every algorithm of the whole client profile (what a client without
// AES-GCM is offered; ssh-audit itself speaks AES-GCM and is offered
// that): none may be reported as a failure.
func TestCryptoProfileSSHAudit(t *testing.T) {
	devstack.Require(t, "ssh-audit", "apt-get install -y ssh-audit (deploy/dev/install.sh)")
	e := newEnv(t)
	live := sshAudit(t, "-t", "10", "-p", strconv.Itoa(e.port), "127.0.0.1")
	if !strings.Contains(live, "(gen) banner: SSH-2.0-Custos") || !strings.Contains(live, "(enc) aes128-gcm@openssh.com") {
		t.Fatalf("ssh-audit did not audit the proxy's key exchange:\n%s", live)
	}
	profile := slices.Concat(clientKeyExchanges, []string{"curve25519-sha256@libssh.org"}, clientCiphers, clientMACs,
		[]string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256})
	lookup := sshAudit(t, "--lookup="+strings.Join(profile, ","))
	for _, a := range profile {
		if !regexp.MustCompile(`(?m)^(\(\w+\) )?` + regexp.QuoteMeta(a) + `( |$)`).MatchString(lookup) {
			t.Errorf("ssh-audit did not look up %s:\n%s", a, lookup)
		}
	}
	for name, report := range map[string]string{"proxy": live, "profile": lookup} {
		var fails []string
		for _, l := range strings.Split(report, "\n") {
			if strings.Contains(l, "[fail]") {
				fails = append(fails, l)
			}
			if strings.HasPrefix(l, "(kex)") || strings.HasPrefix(l, "(key)") || strings.HasPrefix(l, "(enc)") || strings.HasPrefix(l, "(mac)") {
				for _, weak := range []string{"sha1", "nistp", "cbc", "ssh-rsa ", "group14", "group1-", "group-exchange", "chacha20"} {
					if strings.Contains(l, weak) {
						t.Errorf("%s offers %q: %s", name, weak, l)
					}
				}
			}
		}
		if len(fails) > 0 {
			t.Errorf("ssh-audit reports %d failures for the %s:\n%s", len(fails), name, strings.Join(fails, "\n"))
		}
	}
}

// sshAudit runs ssh-audit without colours and returns its report.
func sshAudit(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh-audit", append([]string{"-n"}, args...)...).CombinedOutput()
	// ssh-audit exits non-zero for warnings and unknown algorithms too;
	// what counts are the lines.
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ssh-audit: %v", err)
	}
	t.Logf("ssh-audit %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// TestOpenSSHNegotiatesAESGCM: OpenSSH lists AES-CTR before AES-GCM, yet
// is offered AES-GCM alone (the proxy's cheapest cipher) as long as its
// configuration allows it; a client configured for AES-CTR only still
// connects, and ChaCha20-Poly1305 is not offered.
func TestOpenSSHNegotiatesAESGCM(t *testing.T) {
	e, logs := newClientsEnv(t)
	cases := []struct {
		opts   []string
		cipher string // empty: refused
		mac    string
	}{
		{nil, ssh.CipherAES128GCM, ""},
		{[]string{"-o", "Ciphers=aes256-ctr"}, ssh.CipherAES256CTR, ssh.HMACSHA256ETM},
		{[]string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha2-512"}, ssh.CipherAES128CTR, ssh.HMACSHA512},
		{[]string{"-o", "Ciphers=aes256-ctr,aes256-gcm@openssh.com"}, ssh.CipherAES256GCM, ""},
		{[]string{"-o", "Ciphers=chacha20-poly1305@openssh.com"}, "", ""},
		{[]string{"-o", "KexAlgorithms=ecdh-sha2-nistp256,diffie-hellman-group14-sha1"}, "", ""},
		{[]string{"-o", "MACs=hmac-sha1", "-o", "Ciphers=aes128-ctr"}, "", ""},
	}
	for i, tc := range cases {
		before := strings.Count(logs.String(), "ssh client transport")
		args := append(append([]string{"-p", strconv.Itoa(e.port)}, e.sshOpts()...), tc.opts...)
		r := run(t, nil, "ssh", append(args, testTarget+"@127.0.0.1", "echo ok-"+strconv.Itoa(i))...)
		if tc.cipher == "" {
			if r.code == 0 {
				t.Errorf("%v: connected, want refused", tc.opts)
			}
			continue
		}
		if r.code != 0 || strings.TrimSpace(r.stdout) != "ok-"+strconv.Itoa(i) {
			t.Errorf("%v: exit %d, %q %s", tc.opts, r.code, r.stdout, r.stderr)
			continue
		}
		lines := strings.Split(logs.String(), "\n")
		var tr string
		for _, l := range lines {
			if strings.Contains(l, "ssh client transport") {
				if before--; before < 0 {
					tr = l
					break
				}
			}
		}
		if !strings.Contains(tr, "cipher="+tc.cipher+" ") || !strings.Contains(tr, "mac="+tc.mac) {
			t.Errorf("%v: negotiated %s, want %s %s", tc.opts, tr, tc.cipher, tc.mac)
		}
	}
}

// TestParamikoConnects runs Debian's paramiko (the SSH library of Ansible
// and Fabric) through the proxy: a command and an SFTP round trip, both
// recorded.
func TestParamikoConnects(t *testing.T) {
	if err := exec.Command(debianPython, "-c", "import paramiko").Run(); err != nil {
		devstack.Unavailable(t, "python3-paramiko not importable by "+debianPython+": apt-get install -y python3-paramiko (deploy/dev/install.sh)")
	}
	e, logs := newClientsEnv(t)
	remote := e.remoteDir()
	local := filepath.Join(t.TempDir(), "up.txt")
	if err := os.WriteFile(local, []byte("sent by paramiko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostKey := base64.StdEncoding.EncodeToString(e.proxy.HostKey().Marshal())
	script := `
import sys, base64, paramiko
port, key, hostkey, user, local, remote = sys.argv[1:]
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.RejectPolicy())
c.get_host_keys().add("[127.0.0.1]:" + port, "ssh-ed25519", paramiko.Ed25519Key(data=base64.b64decode(hostkey)))
c.connect("127.0.0.1", port=int(port), username=user, pkey=paramiko.Ed25519Key.from_private_key_file(key),
          allow_agent=False, look_for_keys=False, timeout=10, banner_timeout=10, auth_timeout=10)
t = c.get_transport()
print("transport", t.local_cipher, t.local_mac, t.host_key_type)
_, out, _ = c.exec_command("echo paramiko-$((6*7))")
print(out.read().decode().strip(), out.channel.recv_exit_status())
s = c.open_sftp()
s.put(local, remote + "/p.txt")
print("sftp", s.open(remote + "/p.txt").read().decode().strip())
s.close()
c.close()
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, "-c", script, strconv.Itoa(e.port), e.key, hostKey, testTarget, local, remote)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("paramiko through the proxy: %v\n%s", err, out)
	}
	t.Logf("paramiko:\n%s", out)
	for _, want := range []string{"transport aes128-ctr hmac-sha2-256 ssh-ed25519", "paramiko-42 0", "sftp sent by paramiko"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("paramiko output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(remote, "p.txt")); err != nil || string(b) != "sent by paramiko\n" {
		t.Errorf("file on the target: %q, %v", b, err)
	}
	tr := negotiated(t, logs, "SSH-2.0-paramiko_2")
	if !strings.Contains(tr, "kex=curve25519-sha256@libssh.org") || !strings.Contains(tr, "cipher=aes128-ctr") {
		t.Errorf("paramiko transport: %s", tr)
	}
	waitRecordings(t, e.rec, 1)
	if !recordedOutput(e.rec, "paramiko-42") {
		t.Error("the command's output is not in a recording")
	}
	if !recordedFile(e.rec, "write", filepath.Join(remote, "p.txt")) {
		t.Error("the SFTP upload is not in a recording")
	}
}

// TestCurlSFTP fetches and uploads a file with curl's sftp:// (libssh2)
// through the proxy, checking the proxy's host key by its SHA-256.
func TestCurlSFTP(t *testing.T) {
	devstack.Require(t, "curl", "apt-get install -y curl (deploy/dev/install.sh)")
	v, err := exec.Command("curl", "-V").Output()
	if err != nil || !regexp.MustCompile(`(?m)^Protocols:.* sftp( |$)`).Match(v) {
		devstack.Unavailable(t, "curl has no sftp support (Debian's curl is built with libssh2)")
	}
	e, logs := newClientsEnv(t)
	remote := e.remoteDir()
	if err := os.WriteFile(filepath.Join(remote, "down.txt"), []byte("fetched by curl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pub := e.key + ".pub"
	if err := os.WriteFile(pub, publicKeyLine(t, e.key), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(e.proxy.HostKey().Marshal())
	url := "sftp://127.0.0.1:" + strconv.Itoa(e.port) + remote
	curl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		base := []string{"-sS", "--fail", "--connect-timeout", "10", "-u", testTarget + ":",
			"--key", e.key, "--pubkey", pub, "--hostpubsha256", base64.StdEncoding.EncodeToString(sum[:])}
		cmd := exec.CommandContext(ctx, "curl", append(base, args...)...)
		// A fresh HOME: no known_hosts of the machine's user is consulted.
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			return stdout.String(), &curlError{err, stderr.String()}
		}
		return stdout.String(), nil
	}
	got, err := curl(url + "/down.txt")
	if err != nil {
		t.Fatalf("curl download through the proxy: %v", err)
	}
	if got != "fetched by curl\n" {
		t.Errorf("downloaded %q", got)
	}
	up := filepath.Join(t.TempDir(), "up.txt")
	if err := os.WriteFile(up, []byte("uploaded by curl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := curl("-T", up, url+"/up.txt"); err != nil {
		t.Fatalf("curl upload through the proxy: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(remote, "up.txt")); err != nil || string(b) != "uploaded by curl\n" {
		t.Errorf("file on the target: %q, %v", b, err)
	}
	tr := negotiated(t, logs, "SSH-2.0-libssh2_1")
	if !strings.Contains(tr, "cipher=aes128-ctr") || !strings.Contains(tr, "mac=hmac-sha2-256") {
		t.Errorf("libssh2 transport: %s", tr)
	}
	waitRecordings(t, e.rec, 2)
	if !recordedFile(e.rec, "read", filepath.Join(remote, "down.txt")) || !recordedFile(e.rec, "write", filepath.Join(remote, "up.txt")) {
		t.Error("curl's transfers are not in the recordings")
	}

	// A wrong host key fingerprint is refused by curl: the check above is real.
	bad := sha256.Sum256([]byte("another host"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", "-sS", "--fail", "-u", testTarget+":", "--key", e.key, "--pubkey", pub,
		"--hostpubsha256", base64.StdEncoding.EncodeToString(bad[:]), url+"/down.txt")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("curl accepted a wrong host key fingerprint: %s", out)
	}
}

type curlError struct {
	err    error
	stderr string
}

func (c *curlError) Error() string { return c.err.Error() + ": " + c.stderr }

// publicKeyLine reads a private key file and returns its authorized_keys
// line.
func publicKeyLine(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(s.PublicKey())
}

// waitRecordings waits until n recordings have started and all are closed.
func waitRecordings(t *testing.T, f *lifecycletest.Recorder, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if f.Count() >= n && allClosed(f) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%d recordings, want %d closed", f.Count(), n)
}

func allClosed(f *lifecycletest.Recorder) bool {
	for _, r := range f.All() {
		if !r.Closed() {
			return false
		}
	}
	return true
}

func recordedOutput(f *lifecycletest.Recorder, text string) bool {
	for _, r := range f.All() {
		for _, ev := range r.Snapshot() {
			if ev.Kind == event.KindOutput && strings.Contains(string(ev.Data), text) {
				return true
			}
		}
	}
	return false
}

func recordedFile(f *lifecycletest.Recorder, op, path string) bool {
	for _, r := range f.All() {
		for _, ev := range r.Find(event.KindFile, op) {
			if ev.Text == path {
				return true
			}
		}
	}
	return false
}
