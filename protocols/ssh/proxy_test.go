package sshproxy

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
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
	"github.com/custos-pam/custos/recorder/event"
)

func TestExecExitCodesAndOutput(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		cmd    string
		code   int
		stdout string
		stderr string
	}{
		{"success", "echo hello; exit 0", 0, "hello\n", ""},
		{"failure", "echo out; echo err >&2; exit 1", 1, "out\n", "err\n"},
		{"remote 255", "exit 255", 255, "", ""},
		{"other code", "printf 'no newline at end'; exit 42", 42, "no newline at end", ""},
		// The last bytes must arrive before the exit status closes the
		// channel.
		{"large output", "head -c 3000000 /dev/zero | tr '\\0' x; exit 3", 3, strings.Repeat("x", 3000000), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.ssh(testTarget, tc.cmd)
			if r.code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			if r.stdout != tc.stdout {
				t.Fatalf("stdout %q (len %d), want len %d", abbrev(r.stdout), len(r.stdout), len(tc.stdout))
			}
			if tc.stderr != "" && !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("stderr %q, want %q", r.stderr, tc.stderr)
			}
			rec := e.rec.Last(t)
			rec.WaitClosed(t)
			exec := rec.Find(event.KindSSHRequest, "exec")
			if len(exec) != 1 || exec[0].Text != tc.cmd {
				t.Fatalf("exec events %+v", exec)
			}
			st := rec.Find(event.KindSSHRequest, "exit-status")
			if len(st) != 1 || st[0].N != int64(tc.code) {
				t.Fatalf("exit-status events %+v", st)
			}
			if got := rec.Terminal(event.KindOutput); got != tc.stdout {
				t.Fatalf("recorded output %q, want %q", abbrev(got), abbrev(tc.stdout))
			}
		})
	}
	t.Run("killed by signal", func(t *testing.T) {
		r := e.ssh(testTarget, "kill -TERM $$")
		if r.code != 255 {
			t.Fatalf("exit code %d, want 255 (ssh's code for a remote signal)", r.code)
		}
		rec := e.rec.Last(t)
		rec.WaitClosed(t)
		sig := rec.Find(event.KindSSHRequest, "exit-signal")
		if len(sig) != 1 || sig[0].Name != "TERM" {
			t.Fatalf("exit-signal events %+v\n%s", sig, rec.Dump())
		}
	})
	t.Run("stdin reaches the command", func(t *testing.T) {
		r := run(t, strings.NewReader("line one\nline two\n"), "ssh", e.sshArgs(testTarget, "sha256sum")...)
		want := fmt.Sprintf("%x  -\n", sha256.Sum256([]byte("line one\nline two\n")))
		if r.code != 0 || r.stdout != want {
			t.Fatalf("code %d stdout %q want %q stderr %q", r.code, r.stdout, want, r.stderr)
		}
		rec := e.rec.Last(t)
		rec.WaitClosed(t)
		if got := rec.Terminal(event.KindInput); got != "line one\nline two\n" {
			t.Fatalf("recorded input %q", got)
		}
	})
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:40] + "…" + s[len(s)-40:]
	}
	return s
}

func TestHeaderAndCredentials(t *testing.T) {
	e := newEnv(t)
	r := e.ssh(e.sshd.Login+"@"+testTarget, "id -un")
	if r.code != 0 || strings.TrimSpace(r.stdout) != e.sshd.Login {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	h := rec.Header
	if h.User != testUser || h.Target != testTarget || h.Role != testRole || h.GrantID != e.grant.ID ||
		h.Protocol != "ssh" || h.Account != e.sshd.Login || !strings.HasPrefix(h.SessionID, "ses_") {
		t.Fatalf("header %+v", h)
	}
	if len(h.Policy.Approvers) != 1 || h.Policy.Reason != "INC-1" {
		t.Fatalf("policy snapshot %+v", h.Policy)
	}
	// The upstream certificate was issued for this grant and session.
	e.creds.mu.Lock()
	calls := append([]string(nil), e.creds.calls...)
	e.creds.mu.Unlock()
	if len(calls) != 1 || calls[0] != e.grant.ID+"/"+h.SessionID {
		t.Fatalf("credential calls %v", calls)
	}
	end := rec.Find(event.KindEnd, "")
	if len(end) != 1 || end[0].Op != "closed" {
		t.Fatalf("end events %+v", end)
	}
	if len(e.audit.Find("session.start")) != 1 || len(e.audit.Find("session.end")) != 1 {
		t.Fatalf("audit %+v", e.audit.All())
	}

	// A login the role does not use is refused with a banner.
	r = e.ssh("root@"+testTarget, "true")
	if r.code != 255 || !strings.Contains(r.stderr, `login "root" is not allowed`) {
		t.Fatalf("code %d stderr %q", r.code, r.stderr)
	}
}

func TestNoGrantBanner(t *testing.T) {
	e := newEnv(t)
	e.grants.Remove(testUser, testTarget)
	before := e.rec.Count()
	r := e.ssh(testTarget, "echo should-not-run")
	want := "no active grant for web-1; run: custos request web-1 --role ops --for 1h --reason ..."
	if r.code != 255 || !strings.Contains(r.stderr, want) {
		t.Fatalf("code %d stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "should-not-run") || e.rec.Count() != before {
		t.Fatal("a session ran without a grant")
	}
	if r.took > 5*time.Second {
		t.Fatalf("refusal took %s", r.took)
	}
	denied := e.audit.Find("session.refused")
	if len(denied) != 1 || denied[0].Outcome != "denied" || denied[0].Actor != testUser {
		t.Fatalf("audit %+v", denied)
	}

	// Unknown targets and unknown keys are refused too.
	r = e.ssh("nope", "true")
	if r.code != 255 || !strings.Contains(r.stderr, `unknown SSH target "nope"`) {
		t.Fatalf("code %d stderr %q", r.code, r.stderr)
	}
	other := filepath.Join(t.TempDir(), "k")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	args := e.sshArgs(testTarget, "true")
	for i, a := range args {
		if a == e.key {
			args[i] = other
		}
	}
	r = run(t, nil, "ssh", args...)
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Fatalf("unregistered key: code %d stderr %q", r.code, r.stderr)
	}
}

func TestHoldWaitsForGrant(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Targets[0].Roles[0].Policy.Hold = true
		c.Targets[0].Roles[0].Policy.HoldTimeout = config.Duration(20 * time.Second)
	})
	e.grants.Remove(testUser, testTarget)
	time.AfterFunc(1500*time.Millisecond, func() { e.grants.Set(e.grant) })
	r := e.ssh(testTarget, "echo approved-and-running")
	if r.code != 0 || r.stdout != "approved-and-running\n" {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "waiting up to 20s for approval") || r.took < time.Second {
		t.Fatalf("no hold: took %s stderr %q", r.took, r.stderr)
	}
}

func TestUnknownTargetHostKeyRefused(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		// Pin some other key: the real sshd's key is then unknown.
		c.Targets[0].SSH.HostKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGlOWxMbMV4zG7I7lM5b8N5m3dl5WfBlSnYfvjOUU0Lq"}
	})
	r := e.ssh(testTarget, "echo should-not-run")
	if r.code != 255 || !strings.Contains(r.stderr, "cannot connect to web-1") || !strings.Contains(r.stderr, "is not trusted for web-1") {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if e.rec.Count() != 0 {
		t.Fatal("a recording started for a refused session")
	}
}

// The role's env list decides which client variables reach the target:
// the development sshd accepts TERM, LANG, LC_* and CUSTOS_TEST_*, so a
// CUSTOS_TEST_ variable missing on the target was refused by the proxy.
func TestEnvAllowList(t *testing.T) {
	const setEnv = "SetEnv=CUSTOS_TEST_OK=yes CUSTOS_TEST_NO=no CUSTOS_SECRET_X=no LANG=C.UTF-8 LC_TEST=fr"
	for _, tc := range []struct {
		name            string
		env             []string
		stdout          string
		allowed, denied []string
	}{
		{
			name:    "role list",
			env:     []string{"LC_*", "CUSTOS_TEST_OK"},
			stdout:  "yes///-/fr\n",
			allowed: []string{"CUSTOS_TEST_OK=yes", "LC_TEST=fr"},
			denied:  []string{"CUSTOS_SECRET_X=no", "CUSTOS_TEST_NO=no", "LANG=C.UTF-8"},
		},
		{
			name:    "default list",
			stdout:  "///C.UTF-8/fr\n",
			allowed: []string{"LANG=C.UTF-8", "LC_TEST=fr"},
			denied:  []string{"CUSTOS_SECRET_X=no", "CUSTOS_TEST_NO=no", "CUSTOS_TEST_OK=yes"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) { c.Targets[0].Roles[0].Env = tc.env })
			// LANG is shown as "-" when unset: the target's shell has none
			// of its own (UsePAM no, no login profile setting it).
			cmd := `echo "$CUSTOS_TEST_OK/$CUSTOS_TEST_NO/$CUSTOS_SECRET_X/${LANG:--}/$LC_TEST"`
			r := run(t, nil, "ssh", append([]string{"-o", setEnv}, e.sshArgs(testTarget, cmd)...)...)
			if r.code != 0 || r.stdout != tc.stdout {
				t.Fatalf("code %d stdout %q (want %q) stderr %q", r.code, r.stdout, tc.stdout, r.stderr)
			}
			rec := e.rec.Last(t)
			rec.WaitClosed(t)
			var denied, allowed []string
			for _, ev := range rec.Find(event.KindSSHRequest, "env") {
				if ev.Denied {
					denied = append(denied, ev.Name+"="+ev.Text)
				} else {
					allowed = append(allowed, ev.Name+"="+ev.Text)
				}
			}
			slices.Sort(allowed)
			slices.Sort(denied)
			if !slices.Equal(denied, tc.denied) || !slices.Equal(allowed, tc.allowed) {
				t.Fatalf("denied %v allowed %v\n%s", denied, allowed, rec.Dump())
			}
		})
	}
}

// startLongSession runs a command that prints "ready" and sleeps, and
// returns once "ready" arrived, with the process and its stderr.
func (e *env) startLongSession(t *testing.T, extra ...string) (*exec.Cmd, *syncBuffer, chan error) {
	t.Helper()
	args := append(extra, e.sshArgs(testTarget, "echo ready; sleep 60")...)
	cmd := exec.Command("ssh", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("read %q: %v; stderr %s", line, err, stderr.String())
	}
	done := make(chan error, 1)
	go func() {
		io.Copy(io.Discard, out)
		done <- cmd.Wait()
	}()
	return cmd, stderr, done
}

func TestRevokeGrantClosesSessionWithinASecond(t *testing.T) {
	e := newEnv(t)
	cmd, stderr, done := e.startLongSession(t)
	start := time.Now()
	if n := e.proxy.TerminateGrant(e.grant.ID, "grant revoked by bob"); n != 1 {
		t.Fatalf("terminated %d sessions", n)
	}
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatalf("session still open 1s after revocation; stderr %q", stderr.String())
	}
	took := time.Since(start)
	if !strings.Contains(stderr.String(), "access revoked: grant revoked by bob") {
		t.Fatalf("stderr %q", stderr.String())
	}
	if cmd.ProcessState.ExitCode() != 255 {
		t.Fatalf("exit code %d", cmd.ProcessState.ExitCode())
	}
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	end := rec.Find(event.KindEnd, "")
	if len(end) != 1 || end[0].Op != "terminated" || end[0].Text != "grant revoked by bob" {
		t.Fatalf("end %+v", end)
	}
	if len(e.proxy.Sessions()) != 0 {
		t.Fatal("session still tracked")
	}
	t.Logf("closed %s after revocation", took)
}

func TestTerminateSessionByID(t *testing.T) {
	e := newEnv(t)
	_, stderr, done := e.startLongSession(t)
	live := e.proxy.Sessions()
	if len(live) != 1 || live[0].User != testUser || live[0].GrantID != e.grant.ID {
		t.Fatalf("sessions %+v", live)
	}
	if err := e.proxy.Terminate("ses_nope", "x"); err != ErrSessionNotFound {
		t.Fatalf("unknown session: %v", err)
	}
	if err := e.proxy.Terminate(live[0].ID, "terminated by sam: INC-9"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("session still open 1s after termination")
	}
	if !strings.Contains(stderr.String(), "access revoked: terminated by sam: INC-9") {
		t.Fatalf("stderr %q", stderr.String())
	}
	e.rec.Last(t).WaitClosed(t)
	if len(e.audit.Find("session.terminate")) != 1 {
		t.Fatalf("audit %+v", e.audit.All())
	}
}

func TestGrantExpiryEndsSession(t *testing.T) {
	e := newEnv(t)
	g := e.grant
	g.EndsAt = time.Now().Add(3 * time.Second)
	e.grants.Set(g)
	_, stderr, done := e.startLongSession(t)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session outlived its grant")
	}
	if !strings.Contains(stderr.String(), "access revoked: grant expired") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Targets[0].Roles[0].IdleTimeout = config.Duration(time.Second) })
	start := time.Now()
	_, stderr, done := e.startLongSession(t)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("idle session not closed")
	}
	if time.Since(start) < time.Second || !strings.Contains(stderr.String(), "session closed after 1s without activity") {
		t.Fatalf("after %s stderr %q", time.Since(start), stderr.String())
	}
}

func TestRecordingFailureFailsClosed(t *testing.T) {
	t.Run("start refused", func(t *testing.T) {
		e := newEnv(t)
		e.rec.Fail(fmt.Errorf("object store unreachable"), 0)
		r := e.ssh(testTarget, "echo should-not-run")
		if r.code != 255 || !strings.Contains(r.stderr, "session refused: recording is unavailable") || r.stdout != "" {
			t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("fails mid-session", func(t *testing.T) {
		e := newEnv(t)
		e.rec.Fail(nil, 8)
		r := e.ssh(testTarget, "for i in $(seq 1 200); do echo line $i; sleep 0.01; done")
		if r.code != 255 || !strings.Contains(r.stderr, "session ended: recording failed") {
			t.Fatalf("code %d stderr %q", r.code, r.stderr)
		}
		if strings.Contains(r.stdout, "line 200") {
			t.Fatal("output kept flowing after the recording failed")
		}
	})
	t.Run("fails while idle", func(t *testing.T) {
		e := newEnv(t)
		_, stderr, done := e.startLongSession(t)
		e.rec.Last(t).FailNow()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("idle session kept running after its recording failed")
		}
		if !strings.Contains(stderr.String(), "session ended: recording failed") {
			t.Fatalf("stderr %q", stderr.String())
		}
	})
	t.Run("fail open target continues", func(t *testing.T) {
		e := newEnv(t, func(c *config.Config) { c.Targets[0].Recording.FailOpen = true })
		e.rec.Fail(fmt.Errorf("object store unreachable"), 0)
		r := e.ssh(testTarget, "echo still-works")
		if r.code != 0 || r.stdout != "still-works\n" {
			t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		if len(e.audit.Find("session.record_fail_open")) != 1 {
			t.Fatalf("fail-open not audited: %+v", e.audit.All())
		}
	})
}

func TestHostKeyPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "host_key")
	a, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", st, err)
	}
	b, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.PublicKey().Marshal()) != string(b.PublicKey().Marshal()) {
		t.Fatal("host key changed across restarts")
	}
}

// syncBuffer is a buffer exec's copier writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// userCert writes a private key and a certificate for it (KEY-cert.pub,
// which OpenSSH loads beside KEY) signed by ca for principal user.
func userCert(t *testing.T, dir string, ca ssh.Signer, user string, validFor time.Duration) string {
	t.Helper()
	key := filepath.Join(dir, user+"-"+strconv.Itoa(int(validFor.Seconds())))
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	b, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert := &ssh.Certificate{Key: pub, CertType: ssh.UserCert, KeyId: user, ValidPrincipals: []string{user},
		ValidAfter: uint64(now.Add(-2 * time.Hour).Unix()), ValidBefore: uint64(now.Add(validFor).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}}}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestUserCertificateFromBrokerCA(t *testing.T) {
	newCA := func() ssh.Signer {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ca, otherCA := newCA(), newCA()
	e := newEnvOptions(t, nil, func(o *Options) { o.UserCAKeys = []ssh.PublicKey{ca.PublicKey()} },
		func(c *config.Config) { c.Users = append(c.Users, config.User{Name: "mallory", Disabled: true}) })
	dir := t.TempDir()
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"valid certificate", userCert(t, dir, ca, testUser, time.Hour), true},
		{"expired certificate", userCert(t, dir, ca, testUser, -time.Hour), false},
		{"another CA", userCert(t, dir, otherCA, testUser, 2*time.Hour), false},
		{"disabled user", userCert(t, dir, ca, "mallory", time.Hour), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, nil, "ssh", e.withKey(e.sshArgs(testTarget, "echo via-cert"), tc.key)...)
			if tc.ok != (r.code == 0 && r.stdout == "via-cert\n") {
				t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			if !tc.ok && !strings.Contains(r.stderr, "Permission denied") {
				t.Fatalf("stderr %q", r.stderr)
			}
		})
	}
	if h := e.rec.Last(t).Header; h.User != testUser {
		t.Fatalf("header %+v", h)
	}
}

// TestQuickExecOutputNeverLost runs many short commands at once: a target
// that prints, exits and closes its channel before the exec request's
// answer reaches the relay must still have its output relayed.
func TestQuickExecOutputNeverLost(t *testing.T) {
	e := newEnv(t)
	keyPEM, err := os.ReadFile(e.key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(e.port), &ssh.ClientConfig{
		User: testTarget, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				sess, err := client.NewSession()
				if err != nil {
					errs <- err
					return
				}
				want := fmt.Sprintf("w%d-%d\n", w, i)
				var buf strings.Builder
				sess.Stdout = &buf
				err = sess.Start("echo " + strings.TrimSpace(want))
				if err != nil {
					err = fmt.Errorf("start: %w", err)
				} else if err = sess.Wait(); err != nil {
					err = fmt.Errorf("wait: %w", err)
				}
				out := buf.String()
				sess.Close()
				if err != nil {
					errs <- fmt.Errorf("exec %d/%d: %v", w, i, err)
				} else if string(out) != want {
					errs <- fmt.Errorf("exec %d/%d: stdout %q, want %q", w, i, out, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLoginPicksTheGrant gives alice grants for two roles of one target
// with different logins: LOGIN@TARGET uses the grant of the role that logs
// in as LOGIN, and a login no grant allows is refused with the reason.
func TestLoginPicksTheGrant(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Targets[0].Roles = append(c.Targets[0].Roles, config.Role{Name: "deploy", Login: "deployer"})
	})
	other := e.grant
	other.ID, other.Role = broker.NewID("grt"), "deploy"
	other.EndsAt = e.grant.EndsAt.Add(time.Hour) // ends last: the default pick
	e.grants.Set(other)

	r := e.ssh(e.sshd.Login+"@"+testTarget, "whoami")
	if r.code != 0 || strings.TrimSpace(r.stdout) != e.sshd.Login {
		t.Fatalf("%s@%s: code %d stdout %q stderr %q", e.sshd.Login, testTarget, r.code, r.stdout, r.stderr)
	}
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	if h := rec.Header; h.GrantID != e.grant.ID || h.Role != testRole {
		t.Fatalf("recorded grant %s role %s, want %s %s", h.GrantID, h.Role, e.grant.ID, testRole)
	}

	r = e.ssh("root@"+testTarget, "true")
	if r.code == 0 || !strings.Contains(r.stderr, `login "root" is not allowed by your grant`) {
		t.Fatalf("root@%s: code %d stderr %q", testTarget, r.code, r.stderr)
	}
}
