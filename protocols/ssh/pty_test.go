package sshproxy

import (
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/recorder/event"
)

func TestClampPTY(t *testing.T) {
	cases := []struct{ in, want [4]uint32 }{
		{[4]uint32{80, 24, 640, 480}, [4]uint32{80, 24, 640, 480}},
		{[4]uint32{0, 0, 0, 0}, [4]uint32{0, 0, 0, 0}},
		{[4]uint32{MaxPTYCols, MaxPTYRows, 65535, 65535}, [4]uint32{MaxPTYCols, MaxPTYRows, 65535, 65535}},
		{[4]uint32{65535, 65535, 1 << 31, 1 << 20}, [4]uint32{MaxPTYCols, MaxPTYRows, 65535, 65535}},
		{[4]uint32{1<<32 - 1, 1<<32 - 1, 1<<32 - 1, 1<<32 - 1}, [4]uint32{MaxPTYCols, MaxPTYRows, 65535, 65535}},
	}
	for _, tc := range cases {
		c, r, w, h := clampPTY(tc.in[0], tc.in[1], tc.in[2], tc.in[3])
		if got := [4]uint32{c, r, w, h}; got != tc.want {
			t.Errorf("%v: %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestHugePTYClamped asks for a 65535x65535 terminal and then a
// 65535x65535 window change: the target's terminal and the recording get
// the clamped size.
func TestHugePTYClamped(t *testing.T) {
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
		HostKeyCallback: ssh.FixedHostKey(e.proxy.HostKey()), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 65535, 65535, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	sess.Stdout = out
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(MaxPTYRows) + " " + strconv.Itoa(MaxPTYCols)
	io.WriteString(stdin, "stty size; echo first-$((1+1))\n")
	waitFor(t, out, "first-2")
	if !strings.Contains(out.String(), want) {
		t.Errorf("pty-req 65535x65535: target's terminal is %q, want %q", out.String(), want)
	}
	if err := sess.WindowChange(24, 80); err != nil {
		t.Fatal(err)
	}
	if err := sess.WindowChange(70000, 1<<31); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "stty size; echo second-$((1+1))\n")
	waitFor(t, out, "second-2")
	after := out.String()[strings.Index(out.String(), "first-2"):]
	if !strings.Contains(after, want) {
		t.Errorf("window-change 70000x2^31: target's terminal is %q, want %q", after, want)
	}
	io.WriteString(stdin, "exit\n")
	_ = sess.Wait()
	client.Close()
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	pty := rec.Find(event.KindSSHRequest, "pty-req")
	if len(pty) != 1 || pty[0].Cols != MaxPTYCols || pty[0].Rows != MaxPTYRows {
		t.Errorf("recorded pty-req: %+v", pty)
	}
	var sizes []string
	for _, ev := range rec.Find(event.KindResize, "") {
		sizes = append(sizes, strconv.Itoa(int(ev.Cols))+"x"+strconv.Itoa(int(ev.Rows)))
	}
	if strings.Join(sizes, " ") != "80x24 1000x500" {
		t.Errorf("recorded resizes: %v", sizes)
	}
}

// waitFor waits until the buffer holds s.
func waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
