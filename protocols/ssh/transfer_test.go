package sshproxy

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
	"github.com/custos-pam/custos/recorder/event"
)

const bigFileSize = 100 << 20

// makeFile writes size pseudo-random bytes and returns their SHA-256.
func makeFile(t testing.TB, path string, size int) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(size, len(buf))
		r.Read(buf[:n])
		w.Write(buf[:n])
		size -= n
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// scpArgs builds scp/sftp arguments (both take -P for the port).
func (e *env) scpArgs(extra ...string) []string {
	return append(append([]string{"-P", strconv.Itoa(e.port)}, e.sshOpts()...), extra...)
}

// fileEvents lists a recording's file events as "op path n outcome".
func fileEvents(rec *lifecycletest.Recording) []string {
	var out []string
	for _, ev := range rec.Find(event.KindFile, "") {
		out = append(out, fmt.Sprintf("%s %s %d %s %s", ev.Op, ev.Text, ev.N, strings.Join(ev.Args, ","), ev.Name))
	}
	return out
}

func hasEvent(events []string, prefix string) bool {
	for _, e := range events {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

func TestSCPRoundTrip(t *testing.T) {
	e := newEnv(t)
	// Count the recorded bytes without keeping them.
	e.rec.DiscardData()
	local := filepath.Join(t.TempDir(), "big.bin")
	sum := makeFile(t, local, bigFileSize)
	remote := e.remoteDir()
	tests := []struct {
		name  string
		flags []string
		// up and down are the file events expected for the upload and
		// the download of path P with size N.
		up, down []string
	}{
		{"sftp protocol", nil,
			[]string{"open P 0 write,create", "write P N"}, []string{"open P 0 read", "read P N"}},
		{"legacy protocol", []string{"-O"},
			[]string{"write P N mode=0644"}, []string{"read P N mode=0644"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(remote, fmt.Sprintf("up%d.bin", i))
			r := run(t, nil, "scp", e.scpArgs(append(tc.flags, local, testTarget+"@127.0.0.1:"+path)...)...)
			if r.code != 0 {
				t.Fatalf("upload: code %d stderr %q", r.code, r.stderr)
			}
			if fileSum(t, path) != sum {
				t.Fatal("uploaded file differs")
			}
			up := e.rec.Last(t)
			up.WaitClosed(t)
			back := filepath.Join(t.TempDir(), "back.bin")
			r = run(t, nil, "scp", e.scpArgs(append(tc.flags, testTarget+"@127.0.0.1:"+path, back)...)...)
			if r.code != 0 {
				t.Fatalf("download: code %d stderr %q", r.code, r.stderr)
			}
			if fileSum(t, back) != sum {
				t.Fatal("downloaded file differs")
			}
			down := e.rec.Last(t)
			down.WaitClosed(t)
			for _, c := range []struct {
				rec  *lifecycletest.Recording
				want []string
				kind event.Kind
			}{{up, tc.up, event.KindInput}, {down, tc.down, event.KindOutput}} {
				got := fileEvents(c.rec)
				for _, w := range c.want {
					w = strings.ReplaceAll(strings.ReplaceAll(w, "P", path), "N", strconv.Itoa(bigFileSize))
					if !hasEvent(got, w) {
						t.Errorf("no file event %q in %q", w, got)
					}
				}
				// Under the default policy every byte of the channel is
				// recorded as stream data, with the file events on top.
				if n := c.rec.Recorded(c.kind); n < bigFileSize {
					t.Errorf("%d bytes recorded as %s for a %d-byte file", n, c.kind, bigFileSize)
				}
			}
		})
	}
}

func TestSFTPOperations(t *testing.T) {
	e := newEnv(t)
	local := filepath.Join(t.TempDir(), "big.bin")
	sum := makeFile(t, local, bigFileSize)
	remote := e.remoteDir()
	back := filepath.Join(t.TempDir(), "back.bin")
	d := remote + "/dir1"
	batch := strings.Join([]string{
		"mkdir " + d,
		"put " + local + " " + d + "/a.bin",
		"rename " + d + "/a.bin " + d + "/b.bin",
		"get " + d + "/b.bin " + back,
		"chmod 600 " + d + "/b.bin",
		"-rm " + remote + "/missing",
		"rm " + d + "/b.bin",
		"rmdir " + d,
	}, "\n") + "\n"
	bf := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(bf, []byte(batch), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "sftp", e.scpArgs("-b", bf, testTarget+"@127.0.0.1")...)
	if r.code != 0 {
		t.Fatalf("sftp: code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
	}
	if fileSum(t, back) != sum {
		t.Fatal("file did not round-trip byte-identical")
	}
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	got := fileEvents(rec)
	n := strconv.Itoa(bigFileSize)
	for _, w := range []string{
		"mkdir " + d + " 0 ",
		"open " + d + "/a.bin 0 write,create,truncate",
		"write " + d + "/a.bin " + n + "  ok",
		"rename " + d + "/a.bin 0 " + d + "/b.bin ok",
		"open " + d + "/b.bin 0 read",
		"read " + d + "/b.bin " + n + "  ok",
		"setstat " + d + "/b.bin 0 mode=0600 ok",
		"remove " + remote + "/missing 0  error: no such file",
		"remove " + d + "/b.bin 0  ok",
		"rmdir " + d + " 0  ok",
	} {
		if !hasEvent(got, w) {
			t.Errorf("no file event %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if sub := rec.Find(event.KindSSHRequest, "subsystem"); len(sub) != 1 || sub[0].Text != "sftp" {
		t.Errorf("subsystem events %+v", sub)
	}
}

func TestRsync(t *testing.T) {
	if _, err := exec.LookPath("rsync"); err != nil {
		devstack.Require(t, "rsync", "apt-get install -y rsync")
	}
	e := newEnv(t)
	src := t.TempDir()
	files := map[string]string{"a.txt": "alpha\n", "sub/b.txt": strings.Repeat("beta\n", 10000), "sub/deeper/c.bin": "\x00\x01\x02"}
	for name, body := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	remote := e.remoteDir()
	rsh := "ssh -p " + strconv.Itoa(e.port) + " " + strings.Join(e.sshOpts(), " ")
	r := run(t, nil, "rsync", "-a", "-e", rsh, src+"/", testTarget+"@127.0.0.1:"+remote+"/copy/")
	if r.code != 0 {
		t.Fatalf("rsync up: code %d stderr %q", r.code, r.stderr)
	}
	back := t.TempDir()
	r = run(t, nil, "rsync", "-a", "-e", rsh, testTarget+"@127.0.0.1:"+remote+"/copy/", back+"/")
	if r.code != 0 {
		t.Fatalf("rsync down: code %d stderr %q", r.code, r.stderr)
	}
	for name, body := range files {
		b, err := os.ReadFile(filepath.Join(back, name))
		if err != nil || string(b) != body {
			t.Errorf("%s: %q %v", name, abbrev(string(b)), err)
		}
	}
	rec := e.rec.Last(t)
	rec.WaitClosed(t)
	ex := rec.Find(event.KindSSHRequest, "exec")
	if len(ex) != 1 || !strings.HasPrefix(ex[0].Text, "rsync --server --sender") {
		t.Fatalf("exec %+v", ex)
	}
	cl := rec.Find(event.KindSSHChannel, "close")
	if len(cl) != 1 || cl[0].N < int64(len(files["sub/b.txt"]))/10 {
		t.Fatalf("channel close %+v", cl)
	}
	// rsync has no observer: its channels are recorded in full.
	if out, in := rec.Recorded(event.KindOutput), rec.Recorded(event.KindInput); out+in < cl[0].N {
		t.Errorf("rsync channel moved %d bytes to the client, recorded %d out and %d in", cl[0].N, out, in)
	}
}
