package main

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/deploy/devstack"
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
	pgSeen, stopPG, pgDone := pgTicker(ctx, conn)
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

// pgTicker runs `select 'pg-tick-N'` on conn every 100 ms until stop is
// called; seen holds the last N the client read, done gets the error that
// ended the loop (nil after stop).
func pgTicker(ctx context.Context, conn *pgx.Conn) (seen *atomic.Int64, stop func(), done <-chan error) {
	seen = &atomic.Int64{}
	seen.Store(-1)
	var stopped atomic.Bool
	ch := make(chan error, 1)
	go func() {
		for i := 0; !stopped.Load(); i++ {
			var got string
			if err := conn.QueryRow(ctx, fmt.Sprintf("select 'pg-tick-%d'", i)).Scan(&got); err != nil {
				ch <- err
				return
			}
			seen.Store(int64(i))
			time.Sleep(100 * time.Millisecond)
		}
		ch <- nil
	}()
	return seen, func() { stopped.Store(true) }, ch
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
			if st.Verify.State == "" {
				break
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
