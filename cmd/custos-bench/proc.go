package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func sysProcAttr(c *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: c, Setpgid: true}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuTicks is utime+stime of pid (all its threads) in clock ticks
// (/proc/PID/stat fields 14 and 15); 0 when pid is 0 or gone.
func cpuTicks(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fs := strings.Fields(s[i+2:]) // fields from 3 (state) on
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fs[11], 64)
	st, _ := strconv.ParseFloat(fs[12], 64)
	return u + st
}

// clkTck is the kernel's USER_HZ, 100 on Linux.
const clkTck = 100.0

// rssKiB is VmRSS of pid.
func rssKiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return v
		}
	}
	return 0
}

// pin sets the CPU affinity of every thread of pid (taskset -a -p).
func pin(pid int, cpus string) error {
	if pid == 0 {
		return nil
	}
	out, err := exec.Command("taskset", "-a", "-pc", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bench: taskset %d: %w: %s", pid, err, out)
	}
	return nil
}

// children lists the direct children of pid (PostgreSQL's backends and
// helpers), so a layout can pin the ones already running.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// heapKiB is the broker's Go heap in use (go_memstats_heap_inuse_bytes
// from /metrics, which answers loopback callers), after a collection when
// the stack serves profiles (listen.pprof, security admin sam), or 0 when
// unreadable.
func (s *stack) heapKiB() float64 {
	c := s.client()
	if s.adminToken != "" {
		// Two collections (sync.Pool keeps a victim cache for one) through
		// the heap profile's gc=1, so the figure is live memory, not
		// garbage awaiting collection.
		for range 2 {
			req, _ := http.NewRequest(http.MethodGet, s.env["CUSTOS_URL"]+"/api/v1/debug/pprof/heap?gc=1", nil)
			req.Header.Set("Authorization", "Bearer "+s.adminToken)
			if res, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}
	}
	v, _ := s.metric("go_memstats_heap_inuse_bytes")
	return v / 1024
}

// metric sums the broker's /metrics samples of name over all label sets;
// ok is false when the endpoint cannot be read or has no such sample.
func (s *stack) metric(name string) (sum float64, ok bool) {
	res, err := s.client().Get(s.env["CUSTOS_URL"] + "/metrics")
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(body), "\n") {
		rest, found := strings.CutPrefix(line, name)
		if !found || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest[i+1:]), 64)
			if err == nil {
				sum, ok = sum+f, true
			}
		}
	}
	return sum, ok
}

// settle waits, up to a bound, until the broker holds no session and its
// recorder spool is empty, so that a memory baseline is not taken while
// the previous connections are still being torn down and uploaded.
func (s *stack) settle() { s.drain(true) }

// drain waits, up to a bound, until the recorder spool is empty and, with
// noSessions, until no session is active; it says so when the bound is
// reached.
func (s *stack) drain(noSessions bool) {
	start := time.Now()
	var active, chunks float64
	for time.Since(start) < 60*time.Second {
		// A gauge with no sample yet (no session since start) reads 0.
		active, _ = s.metric("custos_sessions_active")
		chunks, _ = s.metric("custos_recorder_spool_chunks")
		if (!noSessions || active == 0) && chunks == 0 {
			time.Sleep(500 * time.Millisecond)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "bench: broker still busy after %s (%.0f sessions active, %.0f spool chunks); measuring anyway\n",
		time.Since(start).Round(time.Second), active, chunks)
}

// client is the driver's HTTPS client for the broker, trusting the
// stack's CA; made once.
func (s *stack) client() *http.Client {
	if s.api == nil {
		pool := x509.NewCertPool()
		if pem, err := os.ReadFile(s.env["CUSTOS_CA_CERT"]); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		s.api = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	return s.api
}
