package recorder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
	"github.com/custos-pam/custos/recorder/store/s3"
)

// helperConfig is what the crash test passes to its child process.
type helperConfig struct {
	Dir       string    // the testEnv dir: spool, keys, state.db
	LocalDir  string    // local store root, or
	S3        s3.Config // an S3 store
	SessionID string
}

const helperEnv = "CUSTOS_RECORDER_CRASH_HELPER"

// TestCrashHelper is the child process of the crash tests: it records a
// session, printing "<line> <unix nanos>" after each event, until killed.
func TestCrashHelper(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("child process of the crash tests")
	}
	var hc helperConfig
	if err := json.Unmarshal([]byte(raw), &hc); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	state, err := sqlite.Open(ctx, filepath.Join(hc.Dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := manifest.LoadSigner(filepath.Join(hc.Dir, "keys", "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keywrap.LoadLocal(filepath.Join(hc.Dir, "keys", "wrap.key"))
	if err != nil {
		t.Fatal(err)
	}
	var st ObjectStore
	if hc.LocalDir != "" {
		st, err = localdir.New(hc.LocalDir)
	} else {
		st, err = s3.New(hc.S3)
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(ctx, Config{SpoolDir: filepath.Join(hc.Dir, "spool"), Store: st, Signer: signer, Keys: keys,
		Audit: audit.NewLog(state), Index: broker.SessionIndex{Store: state}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.Start(ctx, testHeader(hc.SessionID))
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "exec", Text: "crash-test-command"})
	for i := 0; ; i++ {
		if err := w.Output(1, fmt.Appendf(nil, "line %d\n", i)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(out, "%d %d\n", i, time.Now().UnixNano())
		out.Flush()
		time.Sleep(2 * time.Millisecond)
	}
}

// crashAndRecover runs a recording child process, kills it with SIGKILL
// mid-session, and has a new Recorder over the same spool recover the
// session. It checks that the recording is stored, verified, closed as
// interrupted, and lost at most the last second before the kill.
func crashAndRecover(t *testing.T, env *testEnv, hc helperConfig) {
	ctx := context.Background()
	hc.Dir = env.dir
	raw, _ := json.Marshal(hc)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	written := map[int]time.Time{}
	lines := bufio.NewScanner(stdout)
	killAt := time.Now().Add(3 * time.Second)
	var killed time.Time
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) != 2 {
			continue
		}
		i, err1 := strconv.Atoi(f[0])
		ns, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		written[i] = time.Unix(0, ns)
		if killed.IsZero() && time.Now().After(killAt) {
			killed = time.Now()
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd.Wait()
	if killed.IsZero() {
		t.Fatalf("child ended before it was killed:\n%s", stderr.String())
	}
	if s := env.session(hc.SessionID); s.State != broker.SessionLive {
		t.Fatalf("index before recovery: %+v", s)
	}

	r := env.recorder()
	drain(t, r)
	rep, err := r.Verify(ctx, hc.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact || rep.State != "interrupted" {
		t.Fatalf("recovered recording: %+v", rep)
	}
	s := env.session(hc.SessionID)
	if s.State != broker.SessionInterrupted || s.ManifestHash != rep.ManifestHash || !strings.Contains(s.Index, "crash-test-command") {
		t.Fatalf("index after recovery: %+v", s)
	}

	// Every line up to some n is there, in order, and nothing after it.
	next := 0
	for _, e := range readAll(t, r, hc.SessionID) {
		if e.Kind != event.KindOutput {
			continue
		}
		if want := fmt.Sprintf("line %d\n", next); string(e.Data) != want {
			t.Fatalf("event %q, want %q", e.Data, want)
		}
		next++
	}
	if next == 0 {
		t.Fatal("nothing recovered")
	}
	// Lines the child wrote more than a second (plus slack for the fsync
	// on a loaded machine) before the kill must have survived.
	lostFrom, ok := written[next]
	if !ok {
		t.Logf("recovered all %d lines", next)
		return
	}
	if lost := killed.Sub(lostFrom); lost > 1500*time.Millisecond {
		t.Fatalf("lost %d lines written in the last %v before SIGKILL; at most about 1s may be lost", len(written)-next, lost)
	}
	t.Logf("recovered %d of %d lines; lost the last %v", next, len(written), killed.Sub(lostFrom).Round(time.Millisecond))
}

func TestCrashRecoveryLocal(t *testing.T) {
	env := newEnv(t, nil)
	crashAndRecover(t, env, helperConfig{LocalDir: env.store.(*localdir.Store).Root(), SessionID: "ses_crash_local"})
}
