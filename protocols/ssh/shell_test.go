package sshproxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder/event"
)

// tmuxSession drives a real terminal: the OpenSSH client runs in a tmux
// pane, keys are typed with send-keys and the screen read with
// capture-pane.
type tmuxSession struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T, cols, rows string, command string) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		devstack.Require(t, "tmux", "apt-get install -y tmux")
	}
	m := &tmuxSession{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	m.run("new-session", "-d", "-s", "t", "-x", cols, "-y", rows, command)
	t.Cleanup(func() { exec.Command("tmux", "-S", m.sock, "kill-server").Run() })
	return m
}

func (m *tmuxSession) run(args ...string) string {
	m.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-S", m.sock}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		m.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (m *tmuxSession) screen() string { return m.run("capture-pane", "-p", "-t", "t") }

// waitFor waits until the screen matches.
func (m *tmuxSession) waitFor(re string) string {
	m.t.Helper()
	r := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := m.screen()
		if r.MatchString(s) {
			return s
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("screen never matched %q:\n%s", re, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *tmuxSession) typeLine(s string) {
	m.run("send-keys", "-t", "t", "-l", s)
	m.run("send-keys", "-t", "t", "Enter")
}

var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>])`)

// plain strips terminal control sequences and carriage returns.
func plain(s string) string {
	s = ansiRE.ReplaceAllString(s, "")
	return strings.ReplaceAll(s, "\r", "")
}

func TestInteractiveShellThroughPTY(t *testing.T) {
	e := newEnv(t)
	// LogLevel=ERROR keeps the client's own notices off the screen, so
	// that everything on it came through the session.
	sshCmd := "ssh -tt -o LogLevel=ERROR " + strings.Join(e.sshArgs(testTarget), " ") + "; echo SSH-EXITED-$?; sleep 60"
	m := newTmux(t, "100", "30", sshCmd)
	m.waitFor(`\$ $|\$\s*\n`)
	m.typeLine("echo hello-$((6*7))")
	m.waitFor(`(?m)^hello-42$`)

	// A terminal resize reaches the target as a window change.
	m.run("resize-window", "-t", "t", "-x", "120", "-y", "40")
	time.Sleep(200 * time.Millisecond)
	m.typeLine("stty size")
	m.waitFor(`(?m)^40 120$`)
	seen := m.screen()

	m.typeLine("exit 7")
	m.waitFor(`SSH-EXITED-7`)

	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	out := plain(rec.Terminal(event.KindOutput))
	// Every line the user saw (up to the exit) is in the recorded output.
	for _, line := range strings.Split(seen, "\n") {
		line = strings.TrimRight(line, " ")
		if line == "" {
			continue
		}
		if !strings.Contains(out, line) {
			t.Errorf("screen line %q not in the recorded output:\n%s", line, out)
		}
	}
	if in := rec.Terminal(event.KindInput); !strings.Contains(in, "echo hello-$((6*7))\r") || !strings.Contains(in, "exit 7\r") {
		t.Errorf("recorded input %q", in)
	}
	pty := rec.Find(event.KindSSHRequest, "pty-req")
	if len(pty) != 1 || pty[0].Cols != 100 || pty[0].Rows != 30 || pty[0].Name == "" {
		t.Errorf("pty-req %+v", pty)
	}
	var resized bool
	for _, r := range rec.Find(event.KindResize, "") {
		resized = resized || r.Cols == 120 && r.Rows == 40
	}
	if !resized || len(rec.Find(event.KindSSHRequest, "shell")) != 1 {
		t.Errorf("no 120x40 resize or shell event:\n%s", rec.Dump())
	}
	if st := rec.Find(event.KindSSHRequest, "exit-status"); len(st) != 1 || st[0].N != 7 {
		t.Errorf("exit-status %+v", st)
	}
}

func TestRevokeShowsMessageOnTerminal(t *testing.T) {
	e := newEnv(t)
	sshCmd := "ssh -tt " + strings.Join(e.sshArgs(testTarget), " ") + "; echo SSH-EXITED-$?; sleep 60"
	m := newTmux(t, "100", "30", sshCmd)
	m.waitFor(`\$ $|\$\s*\n`)
	start := time.Now()
	e.proxy.TerminateGrant(e.grant.ID, "grant revoked by bob")
	screen := m.waitFor(`SSH-EXITED-255`)
	if time.Since(start) > 1500*time.Millisecond {
		t.Errorf("terminal closed %s after revocation", time.Since(start))
	}
	if !strings.Contains(screen, "access revoked: grant revoked by bob") {
		t.Fatalf("screen:\n%s", screen)
	}
}
