package sshproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
	"github.com/custos-pam/custos/recorder/event"
)

// These tests play a user with a valid grant who tries to run commands
// whose input and output stay out of the recording by dressing them up as
// file transfers. Every one of them is an exec or subsystem channel that a
// protocol observer could claim.

// digestContents sets the target's file_contents policy to digest.
func digestContents(c *config.Config) {
	c.Targets[0].Recording.FileContents = config.FileContentsDigest
}

// breakNotes returns the channel's stream-break notes for protocol proto.
func breakNotes(rec *lifecycletest.Recording, proto string) []event.Event {
	var out []event.Event
	for _, e := range rec.Find(event.KindNote, proto) {
		if e.Name == noteStreamBreak {
			out = append(out, e)
		}
	}
	return out
}

// TestExecGateShellAfterSCP runs a shell command line that starts with an
// scp server command: it is a command, recorded byte for byte.
func TestExecGateShellAfterSCP(t *testing.T) {
	host, err := os.ReadFile("/etc/hostname")
	if err != nil {
		t.Skip("no /etc/hostname")
	}
	for _, policy := range []string{config.FileContentsFull, config.FileContentsDigest} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) { c.Targets[0].Recording.FileContents = policy })
			r := e.ssh(testTarget, "scp -f /x; echo hidden-$((6*7)); cat /etc/hostname")
			if !strings.Contains(r.stdout, "hidden-42") {
				t.Fatalf("the command did not run: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			rec := e.rec.Last(t)
			rec.WaitClosed(t)
			out := rec.Terminal(event.KindOutput)
			for _, want := range []string{"hidden-42", strings.TrimSpace(string(host))} {
				if !strings.Contains(out, want) {
					t.Errorf("recorded output lacks %q:\n%s", want, rec.Dump())
				}
			}
			if fe := rec.Find(event.KindFile, ""); len(fe) != 0 {
				t.Errorf("a command line got file events: %+v", fe)
			}
		})
	}
}

// TestExecGateShellAfterRsync runs an interactive shell behind an rsync
// server command and types into it.
func TestExecGateShellAfterRsync(t *testing.T) {
	e := newEnv(t, digestContents)
	r := run(t, strings.NewReader("echo typed-$((6*7))\nexit\n"), "ssh",
		e.sshArgs(testTarget, "rsync --server 2>/dev/null ; bash -i")...)
	if !strings.Contains(r.stdout, "typed-42") {
		t.Fatalf("the shell did not run: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	if in := rec.Terminal(event.KindInput); !strings.Contains(in, "echo typed-$((6*7))") {
		t.Errorf("typed command not recorded:\n%s", rec.Dump())
	}
	if out := rec.Terminal(event.KindOutput); !strings.Contains(out, "typed-42") {
		t.Errorf("its output not recorded:\n%s", rec.Dump())
	}
}

// hijackLogin is a login of its own for the .bashrc test, so other tests'
// shells never source the hijacking file.
const hijackLogin = "custos-hijack"

// TestSCPHijackedByBashrc plants a ~/.bashrc that replaces every command
// sshd runs with an interactive shell, then asks for a plain `scp -f`: the
// command passes the gate, and the stream that comes back is a shell. The
// channel is flagged and recorded in full from the first byte that is not
// scp, under both file-contents policies.
func TestSCPHijackedByBashrc(t *testing.T) {
	for _, policy := range []string{config.FileContentsFull, config.FileContentsDigest} {
		t.Run(policy, func(t *testing.T) {
			e := newEnvLogin(t, hijackLogin, nil, nil, func(c *config.Config) {
				c.Targets[0].Recording.FileContents = policy
			})
			u, err := user.Lookup(hijackLogin)
			if err != nil {
				t.Fatal(err)
			}
			rc := filepath.Join(u.HomeDir, ".bashrc")
			os.Remove(rc)
			t.Cleanup(func() { os.Remove(rc) })
			// The user writes the file through the broker, as they could.
			bashrc := `if [ -z "$CUSTOS_HIJACKED" ]; then export CUSTOS_HIJACKED=1; exec bash -i; fi` + "\n"
			if r := run(t, strings.NewReader(bashrc), "ssh", e.sshArgs(testTarget, "cat > ~/.bashrc")...); r.code != 0 {
				t.Fatalf("write .bashrc: code %d stderr %q", r.code, r.stderr)
			}
			r := run(t, strings.NewReader("echo hijacked-$((6*7))\nid -un\nexit\n"), "ssh",
				e.sshArgs(testTarget, "scp -f /etc/hostname")...)
			if !strings.Contains(r.stdout, "hijacked-42") {
				t.Fatalf("the hijack did not run: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			rec := e.rec.Last(t)
			rec.WaitClosed(t)
			if ex := rec.Find(event.KindSSHRequest, "exec"); len(ex) != 1 || ex[0].Text != "scp -f /etc/hostname" {
				t.Fatalf("exec events %+v", ex)
			}
			if in := rec.Terminal(event.KindInput); !strings.Contains(in, "echo hijacked-$((6*7))") || !strings.Contains(in, "id -un") {
				t.Errorf("the hidden shell's input is not recorded:\n%s", rec.Dump())
			}
			if out := rec.Terminal(event.KindOutput); !strings.Contains(out, "hijacked-42") || !strings.Contains(out, hijackLogin) {
				t.Errorf("the hidden shell's output is not recorded:\n%s", rec.Dump())
			}
			if n := breakNotes(rec, "scp"); len(n) != 1 || !strings.Contains(n[0].Text, "stopped parsing as scp") {
				t.Errorf("channel not flagged: %+v\n%s", n, rec.Dump())
			}
		})
	}
}

// TestSCPCraftedFraming talks to a real `scp -t` server through ssh with
// hand-made scp framing and then bytes that are not scp. Played in
// lockstep, as scp does, the file's contents are digested and everything
// from the first stray byte on is recorded; sent all at once, the contents
// arrive before the server accepted the file, which scp never does, so
// they are recorded too. Both channels are flagged.
func TestSCPCraftedFraming(t *testing.T) {
	e := newEnv(t, digestContents)
	dir := e.remoteDir()
	content := "secret-contents-0123456789"
	header := "C0644 " + strconv.Itoa(len(content)) + " x\n"
	stray := "echo smuggled-$((6*7))\n"
	sum := sha256.Sum256([]byte(content))
	for _, tc := range []struct {
		name     string
		lockstep bool
	}{{"lockstep", true}, {"all at once", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("ssh", e.sshArgs(testTarget, "scp -t "+dir+"/x")...)
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ack := func() {
				t.Helper()
				b := make([]byte, 1)
				if _, err := io.ReadFull(out, b); err != nil || b[0] != 0 {
					t.Fatalf("ack %q %v: %s", b, err, stderr.String())
				}
			}
			if tc.lockstep {
				ack()
				io.WriteString(in, header)
				ack()
				io.WriteString(in, content+"\x00")
				ack()
				io.WriteString(in, stray)
			} else {
				io.WriteString(in, header+content+"\x00"+stray)
			}
			in.Close()
			io.Copy(io.Discard, out)
			cmd.Wait()
			rec := e.rec.Last(t)
			rec.WaitClosed(t)
			recorded := rec.Terminal(event.KindInput)
			if !strings.Contains(recorded, header) || !strings.Contains(recorded, stray) {
				t.Errorf("control line or stray bytes not recorded: %q", recorded)
			}
			if n := breakNotes(rec, "scp"); len(n) != 1 {
				t.Errorf("channel not flagged:\n%s", rec.Dump())
			}
			fe := fileEvents(rec)
			if tc.lockstep {
				if strings.Contains(recorded, content) {
					t.Errorf("file contents recorded under the digest policy: %q", recorded)
				}
				if want := "write " + dir + "/x 26 mode=0644,sha256=" + hex.EncodeToString(sum[:]); !hasEvent(fe, want) {
					t.Errorf("no file event %q in %q", want, fe)
				}
			} else if !strings.Contains(recorded, content) {
				t.Errorf("contents sent out of turn not recorded: %q", recorded)
			}
		})
	}
}

// TestFileContentsDigest moves a file each way with legacy scp and with
// SFTP under the digest policy: each file event carries the contents'
// size and SHA-256, and the contents themselves are not recorded.
func TestFileContentsDigest(t *testing.T) {
	e := newEnv(t, digestContents)
	const size = 1 << 20
	local := filepath.Join(t.TempDir(), "f.bin")
	sum := makeFile(t, local, size)
	digest := "sha256=" + hex.EncodeToString(sum[:])
	remote := e.remoteDir()
	for _, tc := range []struct {
		name     string
		flags    []string
		up, down string
	}{
		{"legacy protocol", []string{"-O"}, "write P N mode=0644," + digest, "read P N mode=0644," + digest},
		{"sftp protocol", nil, "write P N " + digest + " ok", "read P N " + digest + " ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := remote + "/" + strings.ReplaceAll(tc.name, " ", "-")
			back := filepath.Join(t.TempDir(), "back.bin")
			for _, dir := range []struct {
				args []string
				want string
				kind event.Kind
			}{
				{append(tc.flags, local, testTarget+"@127.0.0.1:"+path), tc.up, event.KindInput},
				{append(tc.flags, testTarget+"@127.0.0.1:"+path, back), tc.down, event.KindOutput},
			} {
				r := run(t, nil, "scp", e.scpArgs(dir.args...)...)
				if r.code != 0 {
					t.Fatalf("scp %q: code %d stderr %q", dir.args, r.code, r.stderr)
				}
				rec := e.rec.Last(t)
				rec.WaitClosed(t)
				want := strings.ReplaceAll(strings.ReplaceAll(dir.want, "P", path), "N", strconv.Itoa(size))
				if fe := fileEvents(rec); !hasEvent(fe, want) {
					t.Errorf("no file event %q in %q", want, fe)
				}
				// Control lines and packet headers are recorded; the
				// contents are not.
				if n := rec.Recorded(dir.kind); n == 0 || n > size/8 {
					t.Errorf("%d bytes recorded as %s for a %d-byte file", n, dir.kind, size)
				}
				if n := breakNotes(rec, ""); len(n) != 0 {
					t.Errorf("a real transfer was flagged: %+v", n)
				}
			}
			if fileSum(t, back) != sum {
				t.Fatal("file did not round-trip")
			}
		})
	}
	// A tree with times, both ways, in lockstep as scp speaks it: never
	// flagged, every file digested.
	t.Run("legacy protocol, recursive with times", func(t *testing.T) {
		src := t.TempDir()
		if err := os.MkdirAll(filepath.Join(src, "tree", "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(src, "tree", "a.txt"), []byte("alpha"), 0o644)
		os.WriteFile(filepath.Join(src, "tree", "sub", "empty"), nil, 0o600)
		for _, args := range [][]string{
			{"-O", "-r", "-p", filepath.Join(src, "tree"), testTarget + "@127.0.0.1:" + remote},
			{"-O", "-r", "-p", testTarget + "@127.0.0.1:" + remote + "/tree", t.TempDir()},
		} {
			if r := run(t, nil, "scp", e.scpArgs(args...)...); r.code != 0 {
				t.Fatalf("scp %q: code %d stderr %q", args, r.code, r.stderr)
			}
			rec := e.rec.Last(t)
			rec.WaitClosed(t)
			fe := fileEvents(rec)
			for _, want := range []string{remote + "/tree/a.txt 5 mode=0644," + sha("alpha"), remote + "/tree/sub/empty 0 mode=0600," + sha("")} {
				if !hasEvent(fe, "write "+want) && !hasEvent(fe, "read "+want) {
					t.Errorf("no file event for %q in %q", want, fe)
				}
			}
			if n := breakNotes(rec, ""); len(n) != 0 {
				t.Errorf("a real transfer was flagged: %+v", n)
			}
			if strings.Contains(rec.Terminal(event.KindInput)+rec.Terminal(event.KindOutput), "alpha") {
				t.Error("contents recorded under the digest policy")
			}
		}
	})
}
