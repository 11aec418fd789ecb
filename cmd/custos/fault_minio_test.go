package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder/event"
)

// TestFaultMinIOStopped: the broker records into a MinIO of the test's
// own, which the test really stops (SIGTERM to the server process) for
// 30 s and starts again on the same address and data directory. An ssh
// session and a pgx session each print a counter every 100 ms throughout.
//
// With MinIO down both sessions go on (the clients' counters keep
// rising) and new sessions start (a psql and an ssh command run during
// the outage): within recording.max_upload_outage the spool holds the
// chunks, so the outage costs users nothing. When MinIO returns, every
// chunk uploads, each of the four recordings is finalized (manifest
// stored), `custos verify` reports it intact, and its export holds every
// counter the client saw, including those printed during the outage.
func TestFaultMinIOStopped(t *testing.T) {
	mio := devstack.StartOwnMinIO(t)
	s := startFullStack(t, stackOptions{minio: mio.MinIO})
	b := s.b
	s.grant("demo-pg", "readwrite", "10m")
	s.grant("demo-ssh", "ops", "10m")
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	sshCtx, stopSSH := context.WithCancel(ctx)
	defer stopSSH()
	sshSeen, sshDone := s.sshTicker(sshCtx)
	conn := s.pgxConn(ctx, token, "")
	pgSeen, stopPG, pgDone := pgTicker(ctx, conn, "pg-tick")
	waitTicks(t, b, sshSeen, pgSeen, 10)

	mio.Stop(t)
	downAt := time.Now()
	sshAtDown, pgAtDown := sshSeen.Load(), pgSeen.Load()
	if _, err := http.Get(mio.URL() + "/minio/health/live"); err == nil {
		t.Fatal("MinIO still answers after Stop")
	}

	// A new session during the outage is allowed: the spool has room and
	// the outage is shorter than recording.max_upload_outage.
	time.Sleep(3 * time.Second)
	if out, err := s.psql(token, "select 'outage-psql-' || 6*7"); err != nil || !strings.Contains(out, "outage-psql-42") {
		t.Fatalf("psql during the MinIO outage: %v: %q\nbroker log:\n%s", err, out, b.logs)
	}
	if out, err := sshRun(t, s.alice, s.sshPort, "demo-ssh", "echo outage-ssh-$((6*7))"); err != nil || !strings.Contains(out, "outage-ssh-42") {
		t.Fatalf("ssh during the MinIO outage: %v: %q\nbroker log:\n%s", err, out, b.logs)
	}
	time.Sleep(time.Until(downAt.Add(30 * time.Second)))
	sshAtUp, pgAtUp := sshSeen.Load(), pgSeen.Load()
	t.Logf("during the 30s outage: ssh counter %d → %d, pg counter %d → %d", sshAtDown, sshAtUp, pgAtDown, pgAtUp)
	// 30 s at one tick per 100 ms is 300; sleep and scheduling make it less.
	if sshAtUp-sshAtDown < 150 || pgAtUp-pgAtDown < 150 {
		t.Fatalf("sessions stalled while MinIO was down: ssh %d → %d, pg %d → %d", sshAtDown, sshAtUp, pgAtDown, pgAtUp)
	}
	if !strings.Contains(b.logs.String(), "upload failed, will retry") {
		t.Fatalf("the broker never failed an upload: the test did not take MinIO away\nbroker log:\n%s", b.logs)
	}

	mio.Start(t)
	upAt := time.Now()
	// The sessions go on after the return, then end.
	waitTicks(t, b, sshSeen, pgSeen, sshAtUp+20)
	stopPG()
	if err := <-pgDone; err != nil {
		t.Fatalf("pg session: %v", err)
	}
	conn.Close(ctx)
	stopSSH()
	<-sshDone
	sshLast, pgLast := sshSeen.Load(), pgSeen.Load()

	ss := waitStored(t, b, 4)
	t.Logf("all 4 recordings stored %v after MinIO returned", time.Since(upAt))
	var sawPSQL, sawSSH bool
	for _, x := range ss {
		if x.State != "closed" || x.Verify.State != "closed" {
			t.Errorf("session %s (%s) is %s, its recording %s", x.ID, x.Protocol, x.State, x.Verify.State)
		}
		if v := b.ok("sam", "verify", x.ID); !strings.Contains(v, "intact") || !strings.Contains(v, "COMPLIANCE") {
			t.Errorf("verify %s (%s): %s", x.ID, x.Protocol, v)
		}
		events := b.ok("sam", "export", x.ID, "--format", "jsonl")
		switch {
		case strings.Contains(events, "outage-psql-"):
			sawPSQL = true
		case strings.Contains(events, "outage-ssh-42"):
			sawSSH = true
		case x.Protocol == "ssh":
			assertTicks(t, events, "ssh-tick-", sshLast)
		default:
			assertTicks(t, events, "pg-tick-", pgLast)
		}
	}
	if !sawPSQL || !sawSSH {
		t.Errorf("the sessions started during the outage are not both recorded: psql %v, ssh %v", sawPSQL, sawSSH)
	}
}

// waitTicks waits until both counters reach n.
func waitTicks(t *testing.T, b *brokerProc, ssh, pg *atomic.Int64, n int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ssh.Load() < n || pg.Load() < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions not running: ssh %d, pg %d, want %d\nbroker log:\n%s", ssh.Load(), pg.Load(), n, b.logs)
		}
	}
}

// storedSession is a stored recording: its session as listed, and its
// `custos verify -o json` report.
type storedSession struct {
	session
	Verify struct {
		Intact  bool   `json:"intact"`
		Verdict string `json:"verdict"`
		State   string `json:"state"`
	}
}

// waitStored waits until n sessions are listed and every one is stored:
// all its chunks uploaded and its manifest written, so that `custos
// verify` finds it.
func waitStored(t *testing.T, b *brokerProc, n int) []storedSession {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var out []storedSession
		for _, x := range decode[[]session](t, b.ok("sam", "sessions", "-o", "json")) {
			st := storedSession{session: x}
			if v, _, code := b.run("sam", "", "verify", x.ID, "-o", "json"); code == 0 || strings.HasPrefix(v, "{") {
				st.Verify = decode[struct {
					Intact  bool   `json:"intact"`
					Verdict string `json:"verdict"`
					State   string `json:"state"`
				}](t, v)
			}
			if st.Verify.State == "" || st.Verify.State == "pending" || x.State == "live" {
				break // not stored yet (still uploading), or listed before it was
			}
			out = append(out, st)
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions: want %d stored, have %d\nbroker log:\n%s", n, len(out), b.logs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// assertTicks checks that an export holds every counter prefixN from 0 to
// last: nothing the client saw is missing from the recording.
func assertTicks(t *testing.T, events, prefix string, last int64) {
	t.Helper()
	have := map[int64]bool{}
	for _, m := range regexp.MustCompile(regexp.QuoteMeta(prefix)+`(\d+)`).FindAllStringSubmatch(events, -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		have[n] = true
	}
	var missing []int64
	for i := int64(0); i <= last; i++ {
		if !have[i] {
			missing = append(missing, i)
		}
	}
	if last < 0 || len(missing) > 0 {
		t.Errorf("recording lacks %d of the %s counters 0..%d the client saw (first: %v)", len(missing), prefix, last, missing[:min(len(missing), 5)])
	} else {
		t.Logf("recording holds every %s counter 0..%d the client saw", prefix, last)
	}
}

// TestFaultSpoolFull: MinIO stopped and the spool full. The spool is
// capped (recording.spool_max_bytes, 4 MiB) so that it fills for real:
// with MinIO down, an ssh session floods random (incompressible) output
// until the recorder refuses an event.
//
// Fail-closed: the flooding session and the two quiet running sessions
// (an ssh and a pgx ticker) end at once with a message naming the full
// spool; new psql and ssh sessions are refused with a message naming the
// recording. The attacker's view: every byte the flooding client saw is
// in its recording (the recorder refuses an event before the proxy
// relays it), so flooding the spool gets no output past the recording.
// When MinIO returns, what was spooled uploads; each recording verifies
// intact and says it was interrupted by the recording failure, none is
// sealed as closed; and new sessions start again.
func TestFaultSpoolFull(t *testing.T) {
	mio := devstack.StartOwnMinIO(t)
	const spoolMax = 4 << 20
	s := startFullStack(t, stackOptions{minio: mio.MinIO, recording: fmt.Sprintf("spool_max_bytes: %d", spoolMax)})
	b := s.b
	s.grant("demo-pg", "readwrite", "10m")
	s.grant("demo-ssh", "ops", "10m")
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	ticker := s.sshCommand(ctx, "i=0; while [ $i -lt 1200 ]; do echo ssh-tick-$i; i=$((i+1)); sleep 0.1; done")
	sshSeen := ticker.ticks("ssh-tick-")
	conn := s.pgxConn(ctx, token, "")
	pgSeen, _, pgDone := pgTicker(ctx, conn, "pg-tick")
	waitTicks(t, b, sshSeen, pgSeen, 10)

	mio.Stop(t)
	flood := s.sshCommand(ctx, "head -c 64M /dev/urandom")
	floodErr := flood.wait(t, 60*time.Second)
	saw := flood.stdout.Bytes()
	t.Logf("flooding client: %v after %d bytes; stderr %q", floodErr, len(saw), flood.stderr.String())
	const ended = "custos: session ended: recording failed: spool full"
	if floodErr == nil || len(saw) >= 64<<20 || !strings.Contains(flood.stderr.String(), ended) {
		t.Fatalf("flooding a %d-byte spool with MinIO down: %v after %d bytes, stderr %q\nbroker log:\n%s",
			spoolMax, floodErr, len(saw), flood.stderr.String(), b.logs)
	}

	// The quiet sessions end too, each with the reason.
	if err := ticker.wait(t, 10*time.Second); err == nil || !strings.Contains(ticker.stderr.String(), ended) {
		t.Errorf("running ssh session with the spool full: %v, stderr %q", err, ticker.stderr.String())
	}
	select {
	case err := <-pgDone:
		if err == nil || !strings.Contains(err.Error(), "custos: session recording failed (spool full); session ended (fail-closed) (SQLSTATE 57P01)") {
			t.Errorf("running pgx session with the spool full: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("running pgx session still going 10s after the spool filled")
	}
	sshLast, pgLast := sshSeen.Load(), pgSeen.Load()

	// New sessions are refused, saying why.
	out, err := s.psql(token, "select 'should-not-run'")
	t.Logf("psql with the spool full: %q", out)
	if err == nil || !strings.Contains(out, "FATAL:  custos: session recording unavailable; connection refused (fail-closed)") {
		t.Errorf("psql with the spool full: want a refusal naming the recording, got %v: %q", err, out)
	}
	out, err = sshRun(t, s.alice, s.sshPort, "demo-ssh", "echo should-not-run")
	t.Logf("ssh with the spool full: %q", out)
	if err == nil || strings.Contains(out, "should-not-run") || !strings.Contains(out, "custos: session refused: recording is unavailable") {
		t.Errorf("ssh with the spool full: want a refusal naming the recording, got %v: %q", err, out)
	}
	if used, ok := sample(scrapeMetrics(t, b.url), "custos_recorder_spool_used_bytes"); !ok || used < spoolMax*7/8 {
		t.Errorf("custos_recorder_spool_used_bytes with the spool full: %v (present %v), want >= %d", used, ok, spoolMax*7/8)
	}
	recs := decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "session.recording.failed", "--limit", "100", "-o", "json"))
	if len(recs) < 3 {
		t.Errorf("session.recording.failed records: %d, want one per running session", len(recs))
	}

	mio.Start(t)
	upAt := time.Now()
	ss := waitStored(t, b, 3)
	t.Logf("all 3 recordings stored %v after MinIO returned", time.Since(upAt))
	for _, x := range ss {
		if x.State != "interrupted" || x.Verify.State != "interrupted" || !x.Verify.Intact {
			t.Errorf("session %s (%s): listed %s, recording %s, verify %q; want intact and interrupted",
				x.ID, x.Protocol, x.State, x.Verify.State, x.Verify.Verdict)
		}
		events := b.ok("sam", "export", x.ID, "--format", "jsonl")
		out, end := recordedOutput(t, events)
		// ssh: "interrupted by system: recording failed: spool full";
		// postgres records the FATAL it sent, by "broker".
		if !strings.HasPrefix(end, "interrupted by ") || !strings.Contains(end, "recording failed") || !strings.Contains(end, "spool full") {
			t.Errorf("session %s (%s) recording ends %q", x.ID, x.Protocol, end)
		}
		switch {
		case x.Protocol == "postgres":
			assertTicks(t, events, "pg-tick-", pgLast)
		case bytes.Contains(out, []byte("ssh-tick-")):
			assertTicks(t, events, "ssh-tick-", sshLast)
		default:
			// Everything the flooding client saw is in the recording.
			if !bytes.HasPrefix(out, saw) {
				t.Errorf("the flooding client saw %d bytes; the recording holds %d, not starting with them", len(saw), len(out))
			} else {
				t.Logf("flood: the client saw %d bytes, all in the recording (%d bytes of output recorded)", len(saw), len(out))
			}
		}
	}

	// The spool emptied as the recordings were stored: sessions start again.
	if out, err := s.psql(token, "select 'after-' || 6*7"); err != nil || !strings.Contains(out, "after-42") {
		t.Errorf("psql once MinIO returned: %v: %q", err, out)
	}
}

// sshRunning is an ssh command running through the proxy as alice.
type sshRunning struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

// sshCommand starts command on demo-ssh through the proxy.
func (s *fullStack) sshCommand(ctx context.Context, command string) *sshRunning {
	t := s.b.t
	t.Helper()
	r := &sshRunning{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	r.cmd = exec.CommandContext(ctx, "ssh", "-i", s.alice, "-p", fmt.Sprint(s.sshPort), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "demo-ssh@127.0.0.1", command)
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	return r
}

// wait waits for the command to end and returns how it ended.
func (r *sshRunning) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("ssh command still running after %v", d)
		return nil
	}
}

// ticks follows the command's output: the last counter prefixN it printed.
func (r *sshRunning) ticks(prefix string) *atomic.Int64 {
	seen := &atomic.Int64{}
	seen.Store(-1)
	re := regexp.MustCompile(regexp.QuoteMeta(prefix) + `(\d+)\n`)
	go func() {
		for {
			if m := re.FindAllStringSubmatch(r.stdout.String(), -1); len(m) > 0 {
				n, _ := strconv.ParseInt(m[len(m)-1][1], 10, 64)
				seen.Store(n)
			}
			select {
			case err := <-r.done:
				r.done <- err
				if m := re.FindAllStringSubmatch(r.stdout.String(), -1); len(m) > 0 {
					n, _ := strconv.ParseInt(m[len(m)-1][1], 10, 64)
					seen.Store(n)
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return seen
}

// recordedOutput decodes a JSONL export: the terminal output recorded
// (stdout and stderr, in order) and its end event as "state by who: why".
func recordedOutput(t *testing.T, jsonl string) (out []byte, end string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(jsonl), "\n")
	for _, line := range lines[1:] { // the first line is the header
		var e event.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("export line %.200q: %v", line, err)
		}
		switch e.Kind {
		case event.KindOutput:
			out = append(out, e.Data...)
		case event.KindEnd:
			end = e.Op + " by " + e.Name + ": " + e.Text
		}
	}
	return out, end
}

// Bytes returns a copy of what was written so far.
func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
