package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/deploy/devstack"
)

// TestFaultStoreRestart: the broker's state store is a PostgreSQL server
// of its own, which the test stops for about ten seconds and starts again
// on the same port and data directory while the broker is under load:
// CLI calls listing grants, requesting and approving, a grant that falls
// due during the outage, and a psql session through the proxy.
//
// During the outage: /readyz says not ready (the store check fails);
// approve and request fail at once with exit 5 and a one-line
// "unavailable" error, no stack trace; the running psql session goes on;
// the grant that falls due ends its session on time. After the restart,
// with the same broker process: /readyz is ready again; the approval
// made during the outage succeeds when retried; the request that failed
// left nothing behind; every grant is still there with the same end
// (none lost, none extended; the one due in the outage is expired); the
// grant-event listener is back: a revocation made on another replica
// ends the running psql session within about a second, though the
// session sweep is five minutes; the audit chain verifies.
func TestFaultStoreRestart(t *testing.T) {
	storePG := devstack.StartOwnPostgres(t)
	dsn := storePG.DSN(storePG.CreateDatabase(t, "custos_store"))
	s := startFullStack(t, stackOptions{edit: func(cfg string) string {
		cfg = regexp.MustCompile(`(?m)^store: .*$`).ReplaceAllLiteralString(cfg, fmt.Sprintf("store: {driver: postgres, dsn: %q}", dsn))
		// Only a grant event can end the session promptly.
		return strings.Replace(cfg, "  data_dir:", "  session_sweep: 5m\n  data_dir:", 1)
	}})
	b := s.b
	pid := b.cmd.Process.Pid
	if !strings.Contains(b.logs.String(), `"store":"postgres"`) {
		t.Fatalf("broker not on the postgres store:\n%s", b.logs)
	}

	// Grants that exist before the outage, and their ends.
	ro := s.grant("demo-pg", "readonly", "10m")
	before := map[string]jsonGrant{ro.ID: ro}
	ops := s.grant("demo-ssh", "ops", "10m")
	before[ops.ID] = ops
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	sh := startPsqlShell(t, s, token, "readonly")
	if out, err := sh.query("select 'before-' || 6*7"); err != nil || out != "before-42" {
		t.Fatalf("psql session: %q, %v\nbroker log:\n%s", out, err, b.logs)
	}
	// A request left pending, to be approved during the outage.
	pending := decode[jsonRequest](t, b.ok("alice", "request", "demo-ssh", "--role", "ops", "--for", "5m", "--reason", "INC-15 pending", "-o", "json"))
	// A grant that falls due during the outage, with a live session.
	short := s.grant("demo-pg", "readwrite", "15s")
	before[short.ID] = short
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	shortConn := s.pgxConn(ctx, token, "readwrite")
	defer shortConn.Close(context.Background())
	if _, err := shortConn.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}

	// Load: grant listings, request and approval pairs, statements in the
	// running session, all the time.
	var load sync.WaitGroup
	stopLoad := make(chan struct{})
	var mu sync.Mutex
	exits := map[string]map[int]int{} // command → exit code → count
	var created []string              // requests created by the load
	note := func(what string, code int, errs string) {
		mu.Lock()
		defer mu.Unlock()
		if exits[what] == nil {
			exits[what] = map[int]int{}
		}
		exits[what][code]++
		if code != 0 && code != 5 {
			t.Errorf("%s under load: exit %d: %q", what, code, errs)
		}
		if code == 5 && (strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "unavailable") || strings.Contains(errs, "goroutine")) {
			t.Errorf("%s under load: want one line naming unavailable, got %q", what, errs)
		}
	}
	for range 2 {
		load.Go(func() {
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				_, errs, code := b.run("sam", "", "grants", "-o", "json")
				note("grants", code, errs)
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	load.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			default:
			}
			out, errs, code := b.run("alice", "", "request", "demo-pg", "--role", "readonly", "--for", "5m", "--reason", fmt.Sprintf("INC-15 load %d", i), "-o", "json")
			note("request", code, errs)
			if code == 0 {
				var r jsonRequest
				if err := json.Unmarshal([]byte(out), &r); err != nil {
					t.Errorf("request output: %q", out)
					return
				}
				mu.Lock()
				created = append(created, r.ID)
				mu.Unlock()
				_, errs, code := b.run("bob", "", "approve", r.ID)
				note("approve", code, errs)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	var ticks, tickErrs atomic.Int64
	load.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			default:
			}
			if out, err := sh.query(fmt.Sprintf("select 'tick-%d'", i)); err != nil || out != fmt.Sprintf("tick-%d", i) {
				t.Errorf("psql session under load: %q, %v", out, err)
				tickErrs.Add(1)
				return
			}
			ticks.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
	})
	defer func() {
		select {
		case <-stopLoad:
		default:
			close(stopLoad)
		}
		load.Wait()
	}()
	time.Sleep(2 * time.Second)

	// The store goes down.
	storePG.Stop(t)
	downAt := time.Now()
	if !downAt.Before(short.EndsAt.Add(-2 * time.Second)) {
		t.Fatalf("store stopped %v, too late for the short grant ending %v", downAt, short.EndsAt)
	}
	ticksAtDown := ticks.Load()
	t.Logf("store stopped at %v", downAt.UTC())

	checkReady(t, b, false)
	_, errs, code := b.run("bob", "", "approve", pending.ID)
	t.Logf("approve with the store down: exit %d: %q", code, errs)
	if code != 5 || !strings.Contains(errs, "unavailable") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("approve with the store down: want exit 5 and one line naming unavailable, got %d: %q", code, errs)
	}
	_, errs, code = b.run("alice", "", "request", "demo-pg", "--role", "readonly", "--for", "5m", "--reason", "INC-15 during the outage", "-o", "json")
	t.Logf("request with the store down: exit %d: %q", code, errs)
	if code != 5 || !strings.Contains(errs, `"unavailable"`) || !strings.Contains(errs, `"exit":5`) {
		t.Errorf("request with the store down: want exit 5 and a JSON error naming unavailable, got %d: %q", code, errs)
	}

	// The grant due during the outage ends its session on time: its end
	// is kept in memory, not looked up.
	var endErr error
	for time.Now().Before(short.EndsAt.Add(3 * time.Second)) {
		if _, endErr = shortConn.Exec(ctx, "select 1"); endErr != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The broker ends it ("grant expired"), or Vault, whose lease is
	// granted in whole seconds rounded down so that the login never
	// outlives the grant, drops the login up to a second before (57P01).
	early := -100 * time.Millisecond
	if endErr != nil && strings.Contains(endErr.Error(), "57P01") {
		early = -1100 * time.Millisecond
	}
	if endErr == nil || !strings.Contains(endErr.Error(), "grant expired") && !strings.Contains(endErr.Error(), "57P01") {
		t.Errorf("session of the grant due during the outage: %v", endErr)
	} else if late := time.Since(short.EndsAt); late > 1500*time.Millisecond || late < early {
		t.Errorf("session of the grant due during the outage ended %v after its end: %v", late, endErr)
	} else {
		t.Logf("session of the grant due during the outage ended %v after its end: %v", late, endErr)
	}

	time.Sleep(time.Until(downAt.Add(10 * time.Second)))
	if n := ticks.Load(); n < ticksAtDown+10 {
		t.Errorf("psql session stalled with the store down: %d statements at the outage, %d now", ticksAtDown, n)
	}
	checkReady(t, b, false)

	storePG.Start(t)
	upAt := time.Now()
	t.Logf("store down for %v", upAt.Sub(downAt))
	for !ready(b) {
		if time.Since(upAt) > 30*time.Second {
			t.Fatalf("broker not ready 30s after the store returned\nbroker log:\n%s", b.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("broker ready %v after the store returned", time.Since(upAt))

	// The approval retried succeeds; it had left nothing behind.
	d := decode[decided](t, b.ok("bob", "approve", pending.ID, "-o", "json"))
	if d.Grant == nil || d.Request.State != "approved" || len(d.Request.Approvals) != 1 {
		t.Fatalf("approval retried after the outage: %+v", d)
	}
	for _, r := range decode[[]struct {
		Reason string `json:"reason"`
	}](t, b.ok("alice", "requests", "--mine", "-o", "json")) {
		if r.Reason == "INC-15 during the outage" {
			t.Error("a request refused during the outage exists")
		}
	}
	close(stopLoad)
	load.Wait()
	t.Logf("exit codes under load: %v; psql statements: %d (%d during the outage)", exits, ticks.Load(), ticks.Load()-ticksAtDown)
	if exits["grants"][5] == 0 || exits["request"][0] == 0 {
		t.Errorf("the load did not span the outage: %v", exits)
	}

	// No grant lost, none extended; the one due is expired as soon as
	// the store answers again.
	waitState(t, b, "sam", short.ID, "expired", time.Now().Add(2*time.Second))
	all := map[string]jsonGrant{}
	for _, g := range decode[[]jsonGrant](t, b.ok("sam", "grants", "-o", "json")) {
		all[g.ID] = g
	}
	for id, g := range before {
		got, ok := all[id]
		switch {
		case !ok:
			t.Errorf("grant %s lost", id)
		case !got.EndsAt.Equal(g.EndsAt) || !got.StartsAt.Equal(g.StartsAt):
			t.Errorf("grant %s: %v–%v before the outage, %v–%v after", id, g.StartsAt, g.EndsAt, got.StartsAt, got.EndsAt)
		case id == short.ID && got.State != "expired", id != short.ID && got.State != "active":
			t.Errorf("grant %s is %s after the outage", id, got.State)
		}
	}
	// Every request the load made is decided: approved, nothing half-way.
	mu.Lock()
	loadReqs := append([]string(nil), created...)
	mu.Unlock()
	states := map[string]string{}
	for _, r := range decode[[]jsonRequest](t, b.ok("alice", "requests", "--mine", "-o", "json")) {
		states[r.ID] = r.State
	}
	for _, id := range loadReqs {
		if states[id] == "pending" {
			b.ok("bob", "approve", id) // its approval failed in the outage
			states[id] = "approved"
		}
		if states[id] != "approved" {
			t.Errorf("request %s made under load is %q", id, states[id])
		}
	}

	// The listener is back: a revocation on another replica ends the
	// running psql session at once.
	for !strings.Contains(b.logs.String(), "grant event listener reconnected") {
		if time.Since(upAt) > 30*time.Second {
			t.Fatalf("grant event listener not back 30s after the store returned\nbroker log:\n%s", b.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := sh.query("select 'after-' || 6*7"); err != nil || out != "after-42" {
		t.Fatalf("psql session after the outage: %q, %v", out, err)
	}
	replica := startReplica(t, b)
	replica.login("alice")
	if _, err := fmt.Fprintln(sh.in, "select pg_sleep(30);"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !targetRuns(t, s.pg, "select pg_sleep(30)%"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the statement never ran: %q", sh.output())
		}
	}
	revokedAt := time.Now()
	replica.ok("alice", "revoke", ro.ID, "--reason", "INC-15 closed on replica b")
	out, err := sh.waitOutput("access revoked: INC-15 closed on replica b", 10*time.Second)
	took := time.Since(revokedAt)
	if err != nil {
		t.Errorf("psql session after the revocation on the other replica: %v: %q\nbroker log:\n%s", err, out, b.logs)
	} else if t.Logf("psql session ended %v after the revocation on the other replica", took); took > 2*time.Second {
		t.Errorf("psql session ended %v after the revocation on the other replica, want about a second", took)
	}

	if b.cmd.Process.Pid != pid {
		t.Fatal("the broker was restarted")
	}
	select {
	case <-b.done:
		t.Fatalf("the broker exited\n%s", b.logs)
	default:
	}
	if out := b.ok("sam", "audit", "verify"); !strings.Contains(out, "intact") {
		t.Errorf("audit verify: %s", out)
	}
	if strings.Contains(b.logs.String(), "goroutine ") || strings.Contains(b.logs.String(), "panic") {
		t.Errorf("broker log holds a panic:\n%s", b.logs)
	}
}

// targetRuns reports whether the target runs a statement LIKE pattern.
func targetRuns(t *testing.T, pg *devstack.Postgres, pattern string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1", pattern).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// ready reports whether the broker's /readyz answers 200.
func ready(b *brokerProc) bool {
	resp, err := readyClient.Get(b.url + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == 200
}

// checkReady checks /readyz and, when not ready, that the store check is
// the one failing.
func checkReady(t *testing.T, b *brokerProc, want bool) {
	t.Helper()
	resp, err := readyClient.Get(b.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got := resp.StatusCode == 200; got != want {
		t.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}
	if !want && !strings.Contains(strings.Join(strings.Fields(string(body)), ""), `{"name":"store","ok":false}`) {
		t.Errorf("/readyz does not name the store: %s", body)
	}
}

// psqlShell is a running interactive psql through the proxy, fed
// statements on its standard input.
type psqlShell struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	done  chan struct{}
	mu    sync.Mutex
	all   strings.Builder
}

// startPsqlShell starts psql as alice for role with the connection token.
func startPsqlShell(t *testing.T, s *fullStack, token, role string) *psqlShell {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", s.pgPort))
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10", "PGOPTIONS=-c custos.role="+role)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sh := &psqlShell{cmd: cmd, in: in, lines: make(chan string, 100), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			sh.mu.Lock()
			sh.all.WriteString(sc.Text() + "\n")
			sh.mu.Unlock()
			select {
			case sh.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(sh.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-sh.done })
	return sh
}

// query runs one statement returning one line and returns that line.
func (sh *psqlShell) query(sql string) (string, error) {
	if _, err := fmt.Fprintln(sh.in, sql+";"); err != nil {
		return "", fmt.Errorf("psql: %w", err)
	}
	select {
	case l := <-sh.lines:
		return l, nil
	case <-sh.done:
		return "", fmt.Errorf("psql exited: %s", sh.output())
	case <-time.After(10 * time.Second):
		return "", fmt.Errorf("psql: no answer in 10s")
	}
}

// waitOutput waits up to d for psql to print text and returns all it
// printed.
func (sh *psqlShell) waitOutput(text string, d time.Duration) (string, error) {
	for deadline := time.Now().Add(d); !strings.Contains(sh.output(), text); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return sh.output(), fmt.Errorf("psql did not print %q in %v", text, d)
		}
	}
	return sh.output(), nil
}

// startReplica starts a second broker with a's config on a's store,
// without proxies.
func startReplica(t *testing.T, a *brokerProc) *brokerProc {
	t.Helper()
	body, err := os.ReadFile(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeTLS(t, dir)
	port := devstack.FreePort(t)
	cfg := string(body)
	for _, l := range []struct{ re, repl string }{
		{`(?m)^  http: .*$`, fmt.Sprintf(`  http: "127.0.0.1:%d"`, port)},
		{`(?m)^  (ssh|postgres): .*\n`, ""},
		{`(?m)^  tls_cert: .*$`, "  tls_cert: " + filepath.Join(dir, "tls.crt")},
		{`(?m)^  tls_key: .*$`, "  tls_key: " + filepath.Join(dir, "tls.key")},
		{`(?m)^  data_dir: .*$`, "  data_dir: " + filepath.Join(dir, "data")},
	} {
		cfg = regexp.MustCompile(l.re).ReplaceAllLiteralString(cfg, l.repl)
	}
	// Replicas share the recording signing key (docs/operations.md).
	aData := regexp.MustCompile(`(?m)^  data_dir: (.*)$`).FindStringSubmatch(string(body))[1]
	key, err := os.ReadFile(filepath.Join(aData, "recording-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "recording-signing.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("https://127.0.0.1:%d", port), homes: map[string]string{}}
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, e := range a.env {
		if !strings.HasPrefix(e, "CUSTOS_CA_CERT=") {
			b.env = append(b.env, e)
		}
	}
	b.env = append(b.env, "CUSTOS_CA_CERT="+filepath.Join(dir, "tls.crt"))
	b.start()
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })
	return b
}

func (sh *psqlShell) output() string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.all.String()
}
