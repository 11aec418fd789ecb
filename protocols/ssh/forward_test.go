package sshproxy

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder/event"
)

// localForward runs `ssh -N -L port:dest` in the background and returns
// the local port and the client's stderr.
func (e *env) localForward(t *testing.T, dest string) (int, *syncBuffer) {
	t.Helper()
	port := devstack.FreePort(t)
	args := append([]string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:%s", port, dest)}, e.sshArgs(testTarget)...)
	cmd := exec.Command("ssh", args...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return port, stderr
		}
		if time.Now().After(deadline) {
			t.Fatalf("local forward never listened: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPortForwardRefused(t *testing.T) {
	e := newEnv(t)
	port, stderr := e.localForward(t, e.sshd.Addr())
	// The client listens locally; the proxy refuses the channel when a
	// connection arrives, so it closes without a byte.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	c.Close()
	if n != 0 || err != nil {
		t.Fatalf("forward relayed %d bytes (%v)", n, err)
	}
	waitContains(t, stderr, "administratively prohibited: custos: port forwarding is not allowed by role ops")
	e.proxy.TerminateGrant(e.grant.ID, "test over")
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	// Two connections arrived: localForward's readiness probe and ours.
	ch := rec.Find(event.KindSSHChannel, "direct-tcpip")
	a := e.audit.Find("ssh.refuse")
	if len(ch) != 2 || len(a) != 2 {
		t.Fatalf("channel events %+v audit %+v", ch, a)
	}
	for i := range ch {
		if !ch[i].Denied || ch[i].Text != e.sshd.Addr() || a[i].Details["destination"] != e.sshd.Addr() {
			t.Fatalf("channel event %+v audit %+v", ch[i], a[i])
		}
	}

	// Remote forwarding is refused when requested, so the client exits.
	r := run(t, nil, "ssh", append([]string{"-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:22"}, e.sshArgs(testTarget, "echo should-not-run")...)...)
	if r.code != 255 || !strings.Contains(r.stderr, "remote port forwarding failed") || r.stdout != "" {
		t.Fatalf("-R: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestAgentAndX11Refused(t *testing.T) {
	e := newEnv(t)
	devstack.Require(t, "ssh-agent", "apt-get install openssh-client")
	agent := exec.Command("ssh-agent", "-D", "-a", t.TempDir()+"/agent.sock")
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	time.Sleep(100 * time.Millisecond)
	cmd := exec.Command("ssh", append([]string{"-A", "-o", "ForwardX11=yes"}, e.sshArgs(testTarget, "echo ran; echo \"agent=$SSH_AUTH_SOCK\"")...)...)
	cmd.Env = append(cmd.Environ(), "SSH_AUTH_SOCK="+agent.Args[3], "DISPLAY=:0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if string(out) != "ran\nagent=\n" {
		t.Fatalf("stdout %q", out)
	}
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	req := rec.Find(event.KindSSHRequest, "auth-agent-req@openssh.com")
	if len(req) != 1 || !req[0].Denied {
		t.Fatalf("agent request %+v\n%s", req, rec.Dump())
	}
	// The client asks for X11 only when it finds xauth; if it asked, the
	// request was refused.
	for _, x := range rec.Find(event.KindSSHRequest, "x11-req") {
		if !x.Denied {
			t.Fatalf("x11 request allowed: %+v", x)
		}
	}
	if len(e.audit.Find("ssh.refuse")) < 1 {
		t.Fatalf("audit %+v", e.audit.All())
	}
}

// echoThrough sends "ping" through the local forward on port and returns
// the answer.
func echoThrough(t *testing.T, port int) string {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "ping\n")
	b, _ := io.ReadAll(c)
	return string(b)
}

// A role with allow_port_forward relays a local forward through the real
// sshd (which allows local forwarding) and records destination and byte
// counts.
func TestPortForwardAllowedByRole(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Targets[0].Roles[0].AllowPortForward = true })
	dest := devstack.EchoServer(t)
	port, stderr := e.localForward(t, dest)
	if got := echoThrough(t, port); got != "echo:ping\n" {
		t.Fatalf("through the forward: %q; ssh: %s\nsshd: %s", got, stderr.String(), tailFile(e.sshd.LogPath()))
	}
	e.proxy.TerminateGrant(e.grant.ID, "test over")
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	// Two channels: localForward's readiness probe, then ours.
	ch := rec.Find(event.KindSSHChannel, "direct-tcpip")
	if len(ch) != 2 {
		t.Fatalf("channel events %+v\n%s", ch, rec.Dump())
	}
	for _, c := range ch {
		if c.Denied || c.Text != dest {
			t.Fatalf("channel event %+v", c)
		}
	}
	// The probe and ours may open their channels in either order: one of
	// the two closes carries the echo's byte counts, the other none.
	var counted, empty int
	for _, c := range rec.Find(event.KindSSHChannel, "close") {
		if c.Channel != ch[0].Channel && c.Channel != ch[1].Channel {
			continue
		}
		switch {
		case c.N == int64(len("echo:ping\n")) && slices.Equal(c.Args, []string{"in=5", "out=10"}):
			counted++
		case c.N == 0 && slices.Equal(c.Args, []string{"in=0", "out=0"}):
			empty++
		}
	}
	if counted != 1 || empty != 1 {
		t.Fatalf("byte counts: want one channel with in=5 out=10 and one without bytes\n%s", rec.Dump())
	}
	if a := e.audit.Find("ssh.forward"); len(a) != 2 || a[1].Details["destination"] != dest {
		t.Fatalf("audit %+v", a)
	}
	if refused := e.audit.Find("ssh.refuse"); len(refused) != 0 {
		t.Fatalf("refusals %+v", refused)
	}
}

func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func waitContains(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%q never appeared in %q", s, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
