package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// peer is one way to reach the PostgreSQL target: through the broker,
// directly, or through PgBouncer in session mode.
type peer struct {
	name     string
	conninfo string
	password string
	pid      int // the proxy process whose CPU time is reported (0: none)
}

func (s *stack) pgPeers() (broker, direct peer) {
	broker = peer{name: "custos",
		// The role is named: alice may hold other grants on demo-pg (the
		// data-protection scenarios'), and without it the broker picks
		// the one ending last.
		conninfo: fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo-pg user=alice sslmode=require options='-c custos.role=readwrite'", s.env["CUSTOS_PG_PORT"]),
		password: s.pgToken, pid: s.brokerPID}
	direct = peer{name: "direct",
		conninfo: fmt.Sprintf("host=127.0.0.1 port=%s dbname=postgres user=%s sslmode=require", s.env["CUSTOS_TARGET_PG_PORT"], s.env["CUSTOS_TARGET_PG_USER"]),
		password: s.env["CUSTOS_TARGET_PG_PASSWORD"]}
	return broker, direct
}

// psqlDirect runs SQL on the target as its superuser.
func (s *stack) psqlDirect(sql string) (string, error) {
	_, d := s.pgPeers()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", d.conninfo, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+d.password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: psql: %w: %s", err, tail(out, 300))
	}
	return strings.TrimSpace(string(out)), nil
}

// initPgbench creates the pgbench tables (scale 1) on the target and lets
// every login use them (the broker's logins are Vault-issued roles).
func (s *stack) initPgbench() error {
	_, d := s.pgPeers()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", "1", d.conninfo)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+d.password)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: pgbench -i: %w: %s", err, tail(out, 500))
	}
	_, err := s.psqlDirect("grant select, insert, update on pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history to public")
	return err
}

// startPgbouncer starts PgBouncer in session mode in front of the target
// (TLS on both sides, as the broker), or returns ok=false when it is not
// installed. stop ends it.
func (s *stack) startPgbouncer() (p peer, stop func(), ok bool, err error) {
	bin, lerr := exec.LookPath("pgbouncer")
	if lerr != nil {
		for _, c := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
			if _, e := os.Stat(c); e == nil {
				bin = c
			}
		}
	}
	if bin == "" {
		return p, nil, false, nil
	}
	cred, err := pgUser()
	if err != nil {
		return p, nil, false, nil
	}
	port, err := freePort()
	if err != nil {
		return p, nil, false, err
	}
	dir := filepath.Join(s.tmp, "pgbouncer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return p, nil, false, err
	}
	// PgBouncer reads the key as postgres: a copy it owns.
	key, err := os.ReadFile(filepath.Join(s.dev, "tls", "server.key"))
	if err != nil {
		return p, nil, false, err
	}
	keyPath := filepath.Join(dir, "server.key")
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		return p, nil, false, err
	}
	if err := os.Chown(keyPath, int(cred.Uid), int(cred.Gid)); err != nil {
		return p, nil, false, err
	}
	user, pass := s.env["CUSTOS_TARGET_PG_USER"], s.env["CUSTOS_TARGET_PG_PASSWORD"]
	users := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(users, []byte(fmt.Sprintf("%q %q\n", user, pass)), 0o600); err != nil {
		return p, nil, false, err
	}
	if err := os.Chown(users, int(cred.Uid), int(cred.Gid)); err != nil {
		return p, nil, false, err
	}
	ini := fmt.Sprintf(`[databases]
postgres = host=127.0.0.1 port=%s dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = plain
auth_file = %s
pool_mode = session
max_client_conn = 2500
default_pool_size = 2100
client_tls_sslmode = require
client_tls_cert_file = %s
client_tls_key_file = %s
server_tls_sslmode = require
logfile = %s
`, s.env["CUSTOS_TARGET_PG_PORT"], port, users, filepath.Join(s.dev, "tls", "server.crt"), keyPath, filepath.Join(dir, "pgbouncer.log"))
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		return p, nil, false, err
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return p, nil, false, err
	}
	cmd := exec.Command(bin, iniPath)
	cmd.SysProcAttr = sysProcAttr(cred)
	if err := cmd.Start(); err != nil {
		return p, nil, false, fmt.Errorf("bench: pgbouncer: %w", err)
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	p = peer{name: "pgbouncer", conninfo: fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s sslmode=require", port, user),
		password: pass, pid: cmd.Process.Pid}
	if err := waitPort(port, 5*time.Second); err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		return p, nil, false, fmt.Errorf("bench: pgbouncer did not listen: %w: %s", err, tail(log, 500))
	}
	return p, stop, true, nil
}

// pgbenchOpts is one pgbench invocation.
type pgbenchOpts struct {
	builtin string // select-only, tpcb-like
	script  string // a script file (-f) instead of the builtin
	mode    string // simple, extended, prepared
	clients int
	secs    int
	connect bool   // -C
	logDir  string // per-transaction log (-l) for latencies
	cpu     string // taskset core list, "" for none
}

type pgbenchResult struct {
	tps      float64
	txns     float64
	cpuTicks float64 // the peer's proxy CPU time during the run, in clock ticks
	lat      []float64
}

var (
	tpsRE  = regexp.MustCompile(`tps = ([0-9.]+) \((without|excluding)`)
	tpsRE2 = regexp.MustCompile(`tps = ([0-9.]+)`)
	txnRE  = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)

func runPgbench(p peer, o pgbenchOpts) (pgbenchResult, error) {
	var r pgbenchResult
	jobs := o.clients
	if jobs > 2 {
		jobs = 2
	}
	args := []string{"-n", "-b", o.builtin, "-M", o.mode, "-c", strconv.Itoa(o.clients), "-j", strconv.Itoa(jobs), "-T", strconv.Itoa(o.secs)}
	if o.script != "" {
		args[1], args[2] = "-f", o.script
	}
	if o.connect {
		args = append(args, "-C")
	}
	if o.logDir != "" {
		os.RemoveAll(o.logDir)
		if err := os.MkdirAll(o.logDir, 0o755); err != nil {
			return r, err
		}
		args = append(args, "-l", "--log-prefix="+filepath.Join(o.logDir, "tx"))
	}
	args = append(args, p.conninfo)
	name := "pgbench"
	if o.cpu != "" {
		args = append([]string{"-c", o.cpu, "pgbench"}, args...)
		name = "taskset"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(o.secs+60)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+p.password)
	before := cpuTicks(p.pid)
	out, err := cmd.CombinedOutput()
	r.cpuTicks = cpuTicks(p.pid) - before
	if err != nil {
		return r, fmt.Errorf("bench: pgbench via %s: %w: %s", p.name, err, tail(out, 400))
	}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		m = tpsRE2.FindSubmatch(out)
	}
	if m == nil && txnRE.Match(out) && strings.Contains(string(txnRE.Find(out)), ": 0") {
		return r, nil // no transaction finished within the run: 0 tx/s
	}
	if m == nil {
		return r, fmt.Errorf("bench: pgbench via %s: no tps in output: %s", p.name, tail(out, 400))
	}
	r.tps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := txnRE.FindSubmatch(out); m != nil {
		r.txns, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if o.logDir != "" {
		r.lat, err = readLatencies(o.logDir)
	}
	return r, err
}

// readLatencies reads pgbench -l logs: the third column is the
// transaction's latency in microseconds.
func readLatencies(dir string) ([]float64, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "tx*"))
	var lat []float64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 3 {
				continue
			}
			if v, err := strconv.ParseFloat(fs[2], 64); err == nil {
				lat = append(lat, v)
			}
		}
	}
	sort.Float64s(lat)
	return lat, nil
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}
