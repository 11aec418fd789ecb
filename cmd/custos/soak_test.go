//go:build soak

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// The soak test (make soak) runs SOAK_SSH concurrent SSH sessions (mixed
// interactive, exec and scp work with the real ssh and scp) and SOAK_PG
// pgbench clients through one broker for SOAK_DURATION while grants are
// revoked and re-granted, then checks every recording against what the
// clients did and the broker's resources against where they started. It
// is behind the soak build tag: `make test` never runs it.

// soakKnobs are the soak's settings, from the environment.
type soakKnobs struct {
	duration    time.Duration // SOAK_DURATION, default 5m
	ssh, pg     int           // SOAK_SSH (100), SOAK_PG (200)
	pgRate      float64       // SOAK_PG_RATE: transactions per second per pgbench client (2)
	revokeEvery time.Duration // SOAK_REVOKE_EVERY: one lane's grant revoked and re-granted this often (20s)
	settle      time.Duration // SOAK_SETTLE: how long resources may take to return (4m)
}

// Clients per lane: each lane is one broker user with its own grant, so
// revoking it ends that lane's sessions and no other.
const (
	pgPerLane  = 20
	sshPerLane = 10
)

func soakKnobsFromEnv(t *testing.T) soakKnobs {
	t.Helper()
	k := soakKnobs{duration: 5 * time.Minute, ssh: 100, pg: 200, pgRate: 2, revokeEvery: 20 * time.Second, settle: 4 * time.Minute}
	durs := map[string]*time.Duration{"SOAK_DURATION": &k.duration, "SOAK_REVOKE_EVERY": &k.revokeEvery, "SOAK_SETTLE": &k.settle}
	for name, dst := range durs {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				t.Fatalf("%s=%q: want a duration such as 5m", name, v)
			}
			*dst = d
		}
	}
	for name, dst := range map[string]*int{"SOAK_SSH": &k.ssh, "SOAK_PG": &k.pg} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: want a count", name, v)
			}
			*dst = n
		}
	}
	if v := os.Getenv("SOAK_PG_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("SOAK_PG_RATE=%q: want transactions per second per client", v)
		}
		k.pgRate = f
	}
	return k
}

// lanes splits n clients into lanes of at most per.
func lanes(n, per int) []int {
	var out []int
	for n > 0 {
		c := min(n, per)
		out = append(out, c)
		n -= c
	}
	return out
}

// soak is one soak run: the stack, the lanes' users and grants, and what
// the clients did.
type soak struct {
	t       *testing.T
	k       soakKnobs
	b       *brokerProc
	vault   *devstack.Vault
	pg      *devstack.Postgres
	dir     string
	sshPort int
	pgPort  int
	// remoteDir is where scp uploads land on the target (same machine).
	remoteDir string
	pgScript  string
	keys      map[string]string // lane user → private key file

	pgUsers, sshUsers []string
	// loadStart and loadEnd bound the load; sessions before it are the
	// warm-up's.
	loadStart, loadEnd time.Time
	// quietAfter is how long after the load the spool was empty.
	quietAfter time.Duration

	mu       sync.Mutex
	grants   map[string]string // lane user → active grant ID ("" while revoked)
	revoked  int
	pgRuns   []soakPGRun
	sshRuns  []soakSSHRun
	problems []string
}

// problem notes something the clients or the revoker ran into; every
// problem fails the soak.
func (s *soak) problem(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.problems) < 200 {
		s.problems = append(s.problems, fmt.Sprintf(format, args...))
	}
}

func TestSoak(t *testing.T) {
	k := soakKnobsFromEnv(t)
	for _, tool := range []string{"ssh", "scp", "pgbench", "psql"} {
		devstack.Require(t, tool, "apt-get install openssh-client postgresql-client-15")
	}
	s := startSoakStack(t, k)
	t.Logf("soak: broker %s, vault %s, target postgres %s", s.b.url, s.vault.Addr, s.pg.Addr())
	t.Logf("soak: %d ssh sessions in %d lanes, %d pgbench clients in %d lanes at %.1f tps each, %v, one revocation every %v",
		k.ssh, len(s.sshUsers), k.pg, len(s.pgUsers), k.pgRate, k.duration, k.revokeEvery)

	// Warm up every path once (a grant, an ssh exec, a pgbench second,
	// an approval, a revocation) so the baseline holds the broker's
	// lazily built state, then take it.
	s.warmUp()
	s.logHeap("before the load, before a collection")
	before := s.baseline(context.Background())
	s.saveProfiles(context.Background(), "before")

	for _, u := range append(append([]string{}, s.pgUsers...), s.sshUsers...) {
		s.grant(u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.duration+5*time.Minute)
	defer cancel()
	start := time.Now()
	s.loadStart = start
	deadline := start.Add(k.duration)
	var wg sync.WaitGroup
	for i, c := range lanes(k.pg, pgPerLane) {
		wg.Add(1)
		go func() { defer wg.Done(); s.pgLane(ctx, s.pgUsers[i], c, deadline) }()
	}
	w := 0
	for i, c := range lanes(k.ssh, sshPerLane) {
		for range c {
			wg.Add(1)
			// Stagger the first connections over five seconds so they
			// do not all arrive in one instant.
			delay := time.Duration(w) * 5 * time.Second / time.Duration(max(k.ssh, 1))
			go func(w int) { defer wg.Done(); s.sshWorker(ctx, w, s.sshUsers[i], deadline, delay) }(w)
			w++
		}
	}
	peakCtx, stopPeak := context.WithCancel(ctx)
	peak := s.watchPeak(peakCtx)
	revCtx, stopRevoker := context.WithCancel(ctx)
	revDone := make(chan struct{})
	go func() { defer close(revDone); s.revoker(revCtx, deadline) }()
	wg.Wait()
	stopRevoker()
	<-revDone
	loadTime := time.Since(start)
	s.loadEnd = time.Now()
	stopPeak()
	<-peak.done

	// The users are done: every grant ends, which revokes its Vault
	// leases, and nothing is left live.
	for _, u := range append(append([]string{}, s.pgUsers...), s.sshUsers...) {
		s.revoke(u)
	}
	// Checking gets its own time: thousands of recordings to verify.
	checkCtx, cancelCheck := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancelCheck()
	s.waitQuiet(checkCtx)
	s.quietAfter = time.Since(s.loadEnd)
	// What the load left behind is sampled before the check: listing and
	// verifying thousands of recordings fills the session table's
	// verification results (a bounded cache, about 300 bytes a session),
	// which is the check's footprint, not the load's. It is sampled
	// again after the check, and reported.
	after := s.settle(checkCtx, before)
	s.saveProfiles(checkCtx, "after")
	checkStart := time.Now()
	res := s.check(checkCtx)
	res.took = time.Since(checkStart)
	s.collect(checkCtx)
	checked := s.sample(checkCtx)
	s.saveProfiles(checkCtx, "checked")
	table := s.table(k, loadTime, res, before, after, checked, peak)
	fmt.Print(table)
	if out := os.Getenv("SOAK_OUT"); out != "" {
		_ = os.MkdirAll(filepath.Dir(out), 0o755)
		_ = os.WriteFile(out, []byte(table), 0o644)
	}
	s.mu.Lock()
	problems := s.problems
	s.mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for _, p := range res.mismatches {
		t.Error(p)
	}
	if !resourcesOK(before, after) {
		t.Errorf("broker resources did not return to where they started (table above); descriptors added: %v, gone: %v",
			fileDiff(before.files, after.files), fileDiff(after.files, before.files))
		t.Logf("broker goroutines at the end:\n%s", s.goroutineDump())
	}
}

// startSoakStack starts PostgreSQL (max_connections raised for the
// pgbench clients), Vault, sshd and MinIO, writes a broker config with one
// user per lane, starts the broker and signs everyone in.
func startSoakStack(t *testing.T, k soakKnobs) *soak {
	t.Helper()
	// Each pgbench client holds a target backend; each lane's run adds a
	// setup connection, and Vault's database plugin its pool.
	maxConn := max(devstack.DefaultMaxConnections, 2*k.pg+100)
	pg := devstack.StartPostgresWith(t, devstack.PostgresOptions{MaxConnections: maxConn})
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	sshd := devstack.StartSSHD(t, v.SSHCAPublicKey)
	mio := devstack.StartMinIO(t)
	bucket := mio.NewLockedBucket(t)

	dir := t.TempDir()
	writeTLS(t, dir)
	s := &soak{t: t, k: k, vault: v, pg: pg, dir: dir, sshPort: devstack.FreePort(t), pgPort: devstack.FreePort(t),
		keys: map[string]string{}, grants: map[string]string{}}
	for i := range lanes(k.pg, pgPerLane) {
		s.pgUsers = append(s.pgUsers, fmt.Sprintf("pg%02d", i+1))
	}
	for i := range lanes(k.ssh, sshPerLane) {
		s.sshUsers = append(s.sshUsers, fmt.Sprintf("ssh%02d", i+1))
	}
	var users strings.Builder
	for _, u := range s.pgUsers {
		fmt.Fprintf(&users, "  - {name: %s, password: env:CUSTOS_E2E_PASSWORD}\n", u)
	}
	for _, u := range s.sshUsers {
		s.keys[u] = writeUserKey(t, dir, u)
		fmt.Fprintf(&users, "  - {name: %s, password: env:CUSTOS_E2E_PASSWORD, ssh_keys: [\"file:%s.pub\"]}\n", u, s.keys[u])
	}
	requesters := strings.Join(append(append([]string{}, s.pgUsers...), s.sshUsers...), ", ")
	httpPort := devstack.FreePort(t)
	cfg := soakConfig(t, fmt.Sprintf(stackConfig, httpPort, s.sshPort, s.pgPort, dir, mio.Endpoint, bucket, v.Addr,
		pg.Addr(), sshd.Addr(), strings.TrimSpace(sshd.HostKeyLine), sshd.Login), dir, users.String(), requesters)
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("https://127.0.0.1:%d", httpPort), homes: map[string]string{}}
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.env = []string{"CUSTOS_E2E_S3_ACCESS=" + mio.AccessKey, "CUSTOS_E2E_S3_SECRET=" + mio.SecretKey,
		"CUSTOS_E2E_VAULT_TOKEN=" + v.BrokerToken, "CUSTOS_CA_CERT=" + filepath.Join(dir, "tls.crt"), "GOTRACEBACK=all"}
	b.start()
	t.Cleanup(func() { b.stop(15) })
	b.login(append([]string{"bob", "sam"}, strings.Split(requesters, ", ")...)...)
	s.b = b

	// pgbench's tables live in the target's default database, written by
	// the superuser directly; the readonly role reads them.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	init := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", "1", "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.User, "postgres")
	init.Env = append(os.Environ(), "PGPASSWORD="+pg.Password, "PGSSLMODE=disable")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	show := exec.CommandContext(ctx, "psql", "-X", "-At", "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.User, "-c", "show max_connections", "postgres")
	show.Env = init.Env
	if out, err := show.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(maxConn) {
		t.Fatalf("target max_connections: %v %q, want %d", err, out, maxConn)
	}
	s.pgScript = filepath.Join(dir, "soak.pgbench")
	if err := os.WriteFile(s.pgScript, []byte("\\set aid random(1, 100000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// scp uploads land here on the target, which is this machine.
	s.remoteDir, _ = os.MkdirTemp("", "custos-soak-remote-")
	if err := os.Chmod(s.remoteDir, 0o1777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.remoteDir) })
	return s
}

// soakConfig turns stackConfig (written for dir) into the soak's broker:
// a user per lane instead of alice, all of them requesters, grants long
// enough for the whole run, and profiles on so a failed run can say where
// its memory went.
func soakConfig(t *testing.T, cfg, dir, users, requesters string) string {
	t.Helper()
	for _, r := range []struct{ old, new string }{
		{"  - {name: alice, password: env:CUSTOS_E2E_PASSWORD, ssh_keys: [\"file:" + dir + "/alice.pub\"]}\n", users},
		{"{name: dbas, members: [alice]}", "{name: dbas, members: [" + requesters + "]}"},
		{"max_duration: 1h", "max_duration: 2h"},
		{"listen:\n", "listen:\n  pprof: true\n"},
	} {
		if !strings.Contains(cfg, r.old) {
			t.Fatalf("stackConfig no longer has %q", r.old)
		}
		cfg = strings.ReplaceAll(cfg, r.old, r.new)
	}
	return cfg
}

// pct is a/b as a percentage, 0 when b is 0.
func pct(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(1000*a/b) / 10
}
