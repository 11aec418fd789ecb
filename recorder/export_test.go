package recorder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder/asciicast"
)

func exportedSession(t *testing.T) (*Recorder, *Recording) {
	t.Helper()
	ctx := context.Background()
	env := newEnv(t, nil)
	r := env.recorder()
	w, err := r.Start(ctx, testHeader("ses_cast"))
	if err != nil {
		t.Fatal(err)
	}
	writeShellSession(t, w)
	w.Output(1, []byte("caf\xc3"))
	w.Output(1, []byte("\xa9 ok\r\n"))
	w.Close()
	drain(t, r)
	rec, err := r.Open(ctx, "ses_cast", Access{Actor: "sec", Purpose: "export asciicast"})
	if err != nil {
		t.Fatal(err)
	}
	return r, rec
}

func TestExportAsciicast(t *testing.T) {
	ctx := context.Background()
	_, rec := exportedSession(t)
	chs, err := rec.TerminalChannels(ctx)
	if err != nil || len(chs) != 2 || chs[0] != 1 || chs[1] != 2 {
		t.Fatalf("channels %v, %v", chs, err)
	}
	var buf bytes.Buffer
	if err := rec.ExportAsciicast(ctx, &buf, AsciicastOptions{Channel: 1}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	sc.Scan()
	var h asciicast.Header
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 || h.Width != 100 || h.Height != 30 || h.Env["TERM"] != "xterm" {
		t.Fatalf("header %s: %v", sc.Bytes(), err)
	}
	var out strings.Builder
	var resized, input bool
	for sc.Scan() {
		var ev [3]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		switch ev[1] {
		case "o":
			out.WriteString(ev[2].(string))
		case "r":
			resized = ev[2] == "120x40"
		case "i":
			input = true
		}
	}
	if !strings.Contains(out.String(), "secret.txt") || !strings.Contains(out.String(), "café ok") || strings.Contains(out.String(), "up 3 days") {
		t.Fatalf("channel 1 output: %q", out.String())
	}
	if !resized || input {
		t.Fatalf("resize %v, input %v", resized, input)
	}
	buf.Reset()
	if err := rec.ExportAsciicast(ctx, &buf, AsciicastOptions{Channel: 2}); err != nil || !strings.Contains(buf.String(), "up 3 days") {
		t.Fatalf("channel 2: %v\n%s", err, buf.String())
	}
	buf.Reset()
	if err := rec.ExportAsciicast(ctx, &buf, AsciicastOptions{Channel: 1, Input: true}); err != nil || !strings.Contains(buf.String(), `"i", "ls`) && !strings.Contains(buf.String(), `"i", "l"`) {
		t.Fatalf("with input: %v\n%s", err, buf.String())
	}
	if err := rec.ExportAsciicast(ctx, &buf, AsciicastOptions{Channel: 9}); err == nil {
		t.Fatal("exported a channel without output")
	}
}

// TestExportPlaysInAsciinema feeds the export to the real asciinema
// player's cat command, which needs a terminal: script(1) provides one.
func TestExportPlaysInAsciinema(t *testing.T) {
	bin, err := devstack.ToolPath("asciinema")
	if err != nil {
		devstack.Require(t, "asciinema", "apt-get install asciinema")
	}
	script, err := exec.LookPath("script")
	if err != nil {
		devstack.Require(t, "script", "apt-get install bsdutils")
	}
	ctx := context.Background()
	_, rec := exportedSession(t)
	path := filepath.Join(t.TempDir(), "ses_cast-1.cast")
	f, _ := os.Create(path)
	if err := rec.ExportAsciicast(ctx, f, AsciicastOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, script, "-q", "-e", "-c", bin+" cat "+path, "/dev/null")
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "PYTHONIOENCODING=utf-8", "TERM=xterm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, out)
	}
	for _, want := range []string{"alice@db:~$ ls", "secret.txt", "café ok"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("asciinema cat output lacks %q:\n%q", want, out)
		}
	}
}

func TestPlay(t *testing.T) {
	ctx := context.Background()
	_, rec := exportedSession(t)
	var buf bytes.Buffer
	start := time.Now()
	if err := rec.Play(ctx, &buf, PlayOptions{Speed: 1000, SkipIdle: true}); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second || !strings.Contains(buf.String(), "secret.txt") || strings.Contains(buf.String(), "up 3 days") {
		t.Fatalf("played %q in %v", buf.String(), time.Since(start))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := rec.Play(cctx, &buf, PlayOptions{Speed: 0.001}); err == nil {
		t.Fatal("Play ignored a cancelled context")
	}
}
