package pgproxy

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// Benchmark settings: each pgbench run is short and every configuration
// runs benchRuns times, interleaved, so drift hits all paths alike.
const (
	benchRuns     = 5
	benchDuration = 2 // seconds per pgbench run
	benchScale    = 8
)

// benchEnv is the devstack PostgreSQL reached three ways: directly, through
// the broker (recording every statement with the real recorder) and
// through PgBouncer in session mode. Every hop uses TLS.
type benchEnv struct {
	s        *stack
	token    string
	direct   string
	broker   string
	bouncer  string
	password string // for direct and PgBouncer
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	s := newStack(b, withRecorder(realRecorder(b)))
	tok, _ := s.token("alice")
	e := &benchEnv{s: s, token: tok, password: s.password,
		direct: fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=require", s.pg.Host, s.pg.Port, s.db, s.role),
		broker: s.conninfo("alice", testTarget, "require")}
	e.bouncer = startPgbouncer(b, s)
	runPgbench(b, s.pgbench, e.direct, e.password, "-i", "-q", "-s", strconv.Itoa(benchScale))
	super(b, s.pg, s.db, "VACUUM ANALYZE")
	return e
}

// startPgbouncer runs PgBouncer in session mode in front of the test
// database, with TLS to the client and to the server.
func startPgbouncer(b *testing.B, s *stack) string {
	b.Helper()
	bin := tool(b, "pgbouncer", "apt-get install -y pgbouncer")
	dir, err := os.MkdirTemp("", "custos-pgbouncer-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cert := selfSignedTLS(b).Certificates[0]
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		b.Fatal(err)
	}
	port := devstack.FreePort(b)
	files := map[string][]byte{
		"server.crt":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"server.key":   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"userlist.txt": fmt.Appendf(nil, "%q %q\n", s.role, s.password),
		"pgbouncer.ini": fmt.Appendf(nil, `[databases]
%[1]s = host=%[2]s port=%[3]d dbname=%[1]s user=%[4]s password=%[5]s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[6]d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[7]s/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 100
client_tls_sslmode = require
client_tls_cert_file = %[7]s/server.crt
client_tls_key_file = %[7]s/server.key
server_tls_sslmode = require
logfile = %[7]s/pgbouncer.log
pidfile = %[7]s/pgbouncer.pid
`, s.db, s.pg.Host, s.pg.Port, s.role, s.password, port, dir),
	}
	cred := postgresUser(b)
	if cred != nil {
		os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			b.Fatal(err)
		}
		if cred != nil {
			os.Chown(p, int(cred.Uid), int(cred.Gid))
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			b.Fatalf("pgbouncer did not start: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=%s sslmode=require", port, s.db, s.role)
}

// postgresUser is the account PgBouncer runs as when we are root (it
// refuses to run as root); nil otherwise.
func postgresUser(b *testing.B) *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		b.Skipf("running as root needs a postgres user for pgbouncer: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// selfCPU is the CPU time (user and system) this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfIO is a counter of /proc/self/io: syscr and syscw count read and
// write system calls (those that found nothing to read too).
func selfIO(name string) int64 {
	data, _ := os.ReadFile("/proc/self/io")
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// mallocs is the number of heap objects this process allocated so far.
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPgbench runs pgbench directly, through the broker with every
// statement recorded, and through PgBouncer (session mode), for the
// select-only (simple and prepared protocol) and TPC-B-like scripts at 1, 8
// and 32 clients, and reports median TPS, the broker's ratios to the other
// two and the broker's CPU time per transaction.
func BenchmarkPgbench(b *testing.B) {
	e := newBenchEnv(b)
	for _, script := range []struct{ name, flag, mode string }{
		{"select-only", "-S", "simple"}, {"select-only", "-S", "prepared"}, {"tpcb", "", "simple"}} {
		for _, clients := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/%s/clients=%d", script.name, script.mode, clients), func(b *testing.B) {
				paths := []struct{ name, conn, password string }{
					{"direct", e.direct, e.password}, {"broker", e.broker, e.token}, {"pgbouncer", e.bouncer, e.password}}
				tps := map[string][]float64{}
				var cpuPerTx, readsPerTx, writesPerTx, allocsPerTx []float64
				for range b.N {
					for run := 0; run < benchRuns; run++ {
						for _, p := range paths {
							args := []string{"-n", "-M", script.mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
								"-T", strconv.Itoa(benchDuration)}
							if script.flag != "" {
								args = append(args, script.flag)
							}
							cpu, r0, w0, m0 := selfCPU(), selfIO("syscr"), selfIO("syscw"), mallocs()
							out := runPgbench(b, e.s.pgbench, p.conn, p.password, args...)
							if p.name == "broker" {
								// The proxy is this process; pgbench and
								// PostgreSQL are others.
								tx := float64(processed(b, out))
								cpuPerTx = append(cpuPerTx, float64((selfCPU()-cpu).Microseconds())/tx)
								readsPerTx = append(readsPerTx, float64(selfIO("syscr")-r0)/tx)
								writesPerTx = append(writesPerTx, float64(selfIO("syscw")-w0)/tx)
								allocsPerTx = append(allocsPerTx, float64(mallocs()-m0)/tx)
							}
							m := tpsRE.FindStringSubmatch(out)
							if m == nil {
								b.Fatalf("%s: no tps in pgbench output:\n%s", p.name, out)
							}
							v, _ := strconv.ParseFloat(m[1], 64)
							tps[p.name] = append(tps[p.name], v)
						}
					}
				}
				d, br, pb := median(tps["direct"]), median(tps["broker"]), median(tps["pgbouncer"])
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(d, "tps_direct")
				b.ReportMetric(br, "tps_broker")
				b.ReportMetric(pb, "tps_pgbouncer")
				b.ReportMetric(br/d, "x_direct")
				b.ReportMetric(br/pb, "x_pgbouncer")
				b.ReportMetric(median(cpuPerTx), "broker_cpu_us/tx")
				b.ReportMetric(median(readsPerTx), "broker_reads/tx")
				b.ReportMetric(median(writesPerTx), "broker_writes/tx")
				b.ReportMetric(median(allocsPerTx), "broker_allocs/tx")
			})
		}
	}
}

// BenchmarkPgbenchConnect runs pgbench -C (a new connection per
// transaction, one client) directly, through the broker and through
// PgBouncer, and reports connections per second, the broker's ratios and
// its CPU time per connection.
func BenchmarkPgbenchConnect(b *testing.B) {
	e := newBenchEnv(b)
	paths := []struct{ name, conn, password string }{
		{"direct", e.direct, e.password}, {"broker", e.broker, e.token}, {"pgbouncer", e.bouncer, e.password}}
	rate := map[string][]float64{}
	var cpuPerConn []float64
	for range b.N {
		for run := 0; run < benchRuns; run++ {
			for _, p := range paths {
				cpu := selfCPU()
				out := runPgbench(b, e.s.pgbench, p.conn, p.password, "-n", "-S", "-C", "-c", "1",
					"-T", strconv.Itoa(benchDuration))
				tx := processed(b, out)
				if p.name == "broker" {
					cpuPerConn = append(cpuPerConn, float64((selfCPU()-cpu).Microseconds())/float64(tx))
				}
				rate[p.name] = append(rate[p.name], float64(tx)/benchDuration)
			}
		}
	}
	d, br, pb := median(rate["direct"]), median(rate["broker"]), median(rate["pgbouncer"])
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(d, "conn/s_direct")
	b.ReportMetric(br, "conn/s_broker")
	b.ReportMetric(pb, "conn/s_pgbouncer")
	b.ReportMetric(br/d, "x_direct")
	b.ReportMetric(br/pb, "x_pgbouncer")
	b.ReportMetric(median(cpuPerConn), "broker_cpu_us/conn")
}

// BenchmarkSimpleQueryLatency measures the latency a single pgbench
// client (a separate process, as in real use) sees for the select-only
// simple query directly, through the broker and through PgBouncer, from
// pgbench's per-transaction log over benchRuns interleaved runs, and
// reports the p50 and p99 the broker adds to the direct path.
func BenchmarkSimpleQueryLatency(b *testing.B) {
	e := newBenchEnv(b)
	dir := b.TempDir()
	paths := []struct{ name, conn, password string }{
		{"direct", e.direct, e.password}, {"broker", e.broker, e.token}, {"pgbouncer", e.bouncer, e.password}}
	lat := map[string][]float64{}
	for range b.N {
		for run := 0; run < benchRuns; run++ {
			for _, p := range paths {
				prefix := filepath.Join(dir, fmt.Sprintf("%s-%d", p.name, run))
				runPgbench(b, e.s.pgbench, p.conn, p.password, "-n", "-M", "simple", "-S", "-c", "1",
					"-T", strconv.Itoa(benchDuration), "-l", "--log-prefix="+prefix)
				lat[p.name] = append(lat[p.name], readLatencies(b, prefix)...)
			}
		}
	}
	pct := func(xs []float64, q float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[int(float64(len(s)-1)*q)]
	}
	b.ReportMetric(0, "ns/op")
	for _, p := range paths {
		b.ReportMetric(pct(lat[p.name], 0.5), "p50_"+p.name+"_us")
	}
	b.ReportMetric(pct(lat["broker"], 0.5)-pct(lat["direct"], 0.5), "p50_added_us")
	b.ReportMetric(pct(lat["broker"], 0.99)-pct(lat["direct"], 0.99), "p99_added_us")
	b.ReportMetric(pct(lat["pgbouncer"], 0.5)-pct(lat["direct"], 0.5), "p50_added_pgbouncer_us")
}

// readLatencies reads the latencies (µs, third column) of pgbench's
// per-transaction logs written with prefix.
func readLatencies(b *testing.B, prefix string) []float64 {
	b.Helper()
	files, _ := filepath.Glob(prefix + ".*")
	var out []float64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			if v, err := strconv.ParseFloat(fields[2], 64); err == nil {
				out = append(out, v)
			}
		}
	}
	if len(out) == 0 {
		b.Fatalf("no pgbench transaction log at %s.*", prefix)
	}
	return out
}
