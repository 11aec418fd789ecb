//go:build soak

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// soakSample is the broker's resources at one moment: from its /metrics
// (loopback callers need no token) and Vault's lease table.
type soakSample struct {
	goroutines, fds, heap, rss float64
	leases                     int
	at                         time.Time
	// files names what the broker's descriptors point at (sockets by
	// their peer), to say what an extra one is.
	files map[string]int
}

func (s *soak) sample(ctx context.Context) soakSample {
	body := scrapeMetrics(s.t, s.b.url)
	get := func(name string) float64 {
		v, ok := sample(body, name)
		if !ok {
			s.t.Fatalf("/metrics has no %s", name)
		}
		return v
	}
	n, err := s.leases(ctx)
	if err != nil {
		s.t.Fatalf("vault leases: %v", err)
	}
	return soakSample{goroutines: get("go_goroutines"), fds: get("process_open_fds"),
		heap: get("go_memstats_heap_inuse_bytes"), rss: get("process_resident_memory_bytes"), leases: n, at: time.Now(),
		files: openFiles(s.b.cmd.Process.Pid)}
}

// openFiles lists what process pid's descriptors point at: paths, and
// for TCP sockets the local and remote ports.
func openFiles(pid int) map[string]int {
	tcp := map[string]string{}
	for _, f := range []string{"tcp", "tcp6"} {
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, l := range strings.Split(string(raw), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) > 9 {
				tcp[fs[9]] = fmt.Sprintf("tcp %s -> %s st %s", port(fs[1]), port(fs[2]), fs[3])
			}
		}
	}
	out := map[string]int{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			if d, ok := tcp[strings.TrimSuffix(ino, "]")]; ok {
				l = d
			} else {
				l = "socket"
			}
		}
		out[l]++
	}
	return out
}

// port is the port of a /proc/net/tcp address (hex ip:hex port).
func port(a string) string {
	_, p, _ := strings.Cut(a, ":")
	n, _ := strconv.ParseInt(p, 16, 32)
	return strconv.Itoa(int(n))
}

// fileDiff says which descriptors after has that before had not.
func fileDiff(before, after map[string]int) []string {
	var out []string
	for k, n := range after {
		if n > before[k] {
			out = append(out, fmt.Sprintf("%d x %s", n-before[k], k))
		}
	}
	sort.Strings(out)
	return out
}

// baseline is the idle broker's level: the highest of five samples a
// second apart, each right after a collection, since its background work
// (sweeps, scrapes, checkpoints) comes and goes.
func (s *soak) baseline(ctx context.Context) soakSample {
	s.collect(ctx)
	b := s.sample(ctx)
	for range 4 {
		time.Sleep(time.Second)
		s.collect(ctx)
		x := s.sample(ctx)
		if x.fds > b.fds {
			b.fds, b.files = x.fds, x.files
		}
		b.goroutines, b.heap, b.rss = max(b.goroutines, x.goroutines), max(b.heap, x.heap), max(b.rss, x.rss)
		b.leases = max(b.leases, x.leases)
	}
	return b
}

// leases counts every lease Vault holds (sys/leases/lookup, walked with
// the root token): database credentials and per-grant tokens.
func (s *soak) leases(ctx context.Context) (int, error) {
	var walk func(prefix string) (int, error)
	walk = func(prefix string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, "LIST", s.vault.Addr+"/v1/sys/leases/lookup/"+prefix, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("X-Vault-Token", s.vault.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode == 404 {
			return 0, nil
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("LIST %s: %d", prefix, resp.StatusCode)
		}
		var r struct {
			Data struct {
				Keys []string `json:"keys"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return 0, err
		}
		n := 0
		for _, k := range r.Data.Keys {
			if strings.HasSuffix(k, "/") {
				m, err := walk(prefix + k)
				if err != nil {
					return 0, err
				}
				n += m
			} else {
				n++
			}
		}
		return n, nil
	}
	return walk("")
}

// resourcesOK: goroutines, open files and Vault leases are back at (or
// below) their starting counts, the Go heap in use within 10% of it.
func resourcesOK(before, after soakSample) bool {
	return after.goroutines <= before.goroutines && after.fds <= before.fds &&
		after.leases <= before.leases && after.heap <= 1.10*before.heap
}

// collect makes the broker run a full garbage collection, the documented
// way an admin can: its heap profile with gc=1 (security admins, with
// listen.pprof on). The heap in use is compared right after one, before
// and after the load alike; sampled at a random point of the collector's
// cycle it also counts whatever garbage has piled up since the last
// collection, which after a load of a gigabyte is tens of MiB for up to
// two minutes (the heap goal is twice what was live at the previous
// collection, and the runtime forces one only every two minutes).
func (s *soak) collect(ctx context.Context) {
	a := s.api()
	defer a.http.CloseIdleConnections() // no connection of its own left in the counts
	if _, err := a.get(ctx, "/api/v1/debug/pprof/heap?gc=1"); err != nil {
		s.t.Fatalf("collect garbage in the broker: %v", err)
	}
}

// settle samples, each time right after a collection, until the
// resources are back where they started or SOAK_SETTLE has passed (idle
// HTTP and Vault connections close after two minutes and 90 s), and
// returns the last sample.
func (s *soak) settle(ctx context.Context, before soakSample) soakSample {
	deadline := time.Now().Add(s.k.settle)
	s.logHeap("after the load, before a collection")
	for {
		s.collect(ctx)
		after := s.sample(ctx)
		if resourcesOK(before, after) || time.Now().After(deadline) || ctx.Err() != nil {
			return after
		}
		time.Sleep(5 * time.Second)
	}
}

// logHeap logs the broker's heap figures as they are now.
func (s *soak) logHeap(when string) {
	body := scrapeMetrics(s.t, s.b.url)
	var v [4]float64
	for i, name := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_next_gc_bytes", "go_memstats_last_gc_time_seconds"} {
		v[i], _ = sample(body, name)
	}
	s.t.Logf("broker heap %s: %.1f MiB in use, %.1f MiB allocated, next collection at %.1f MiB, last one %.0f s ago",
		when, v[0]/(1<<20), v[1]/(1<<20), v[2]/(1<<20), float64(time.Now().UnixNano())/1e9-v[3])
}

// table is the soak's report.
func (s *soak) table(k soakKnobs, load time.Duration, r *soakResult, before, after, checked soakSample, peak *soakPeak) string {
	var b strings.Builder
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "FAIL"
	}
	mb := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	row := func(metric, before, after, v string) {
		fmt.Fprintf(&b, "%-44s %14s %14s  %s\n", metric, before, after, v)
	}
	s.mu.Lock()
	revoked, problems := s.revoked, len(s.problems)
	s.mu.Unlock()
	fmt.Fprintf(&b, "\nsoak: %d ssh + %d pgbench clients (%.1f tps each), %v of load (%v asked), %d revocations\n",
		k.ssh, k.pg, k.pgRate, load.Round(time.Second), k.duration, revoked)
	row("metric", "before", "after", "verdict")
	row("sessions recorded (ssh / postgres)", "-", fmt.Sprintf("%d / %d", r.sshSessions, r.pgSessions), "-")
	row("sessions ended by revocation", "-", fmt.Sprint(r.terminated), verdict(revoked == 0 || r.terminated > 0))
	row("recordings verified", "-", fmt.Sprintf("%d/%d", r.verified, r.verified+r.notVerified), verdict(r.notVerified == 0))
	row("time to list, verify and compare them", "-", r.took.Round(time.Second).String(), "-")
	row("ssh shell+exec sessions, bytes match", "-", fmt.Sprintf("%d/%d", r.sshMatched, r.sshChecked), verdict(r.sshMatched == r.sshChecked))
	row("scp sessions, file size+sha256 match", "-", fmt.Sprintf("%d/%d", r.scpMatched, r.scpChecked), verdict(r.scpMatched == r.scpChecked))
	row("ssh runs (refused / cut before any request)", "-", fmt.Sprintf("%d (%d / %d)", r.sshRuns, r.sshRefused, r.sshCutEarly), "-")
	row("pg sessions, statements match clients", "-", fmt.Sprintf("%d/%d", r.pgMatched, r.pgChecked), verdict(r.pgMatched == r.pgChecked))
	row("pgbench transactions / recorded statements", "-", fmt.Sprintf("%d / %d", r.pgTx, r.pgStatements), verdict(r.pgStatements >= r.pgTx))
	row("other mismatches and client problems", "-", fmt.Sprint(len(r.mismatches)+problems), verdict(len(r.mismatches)+problems == 0))
	row("broker goroutines", fmt.Sprint(before.goroutines), fmt.Sprint(after.goroutines), verdict(after.goroutines <= before.goroutines))
	row("broker open file descriptors", fmt.Sprint(before.fds), fmt.Sprint(after.fds), verdict(after.fds <= before.fds))
	row("Vault leases", fmt.Sprint(before.leases), fmt.Sprint(after.leases), verdict(after.leases <= before.leases))
	row("broker Go heap in use (within 10%)", mb(before.heap), mb(after.heap), verdict(after.heap <= 1.10*before.heap))
	row("broker resident memory (not judged)", mb(before.rss), mb(after.rss), fmt.Sprintf("%+.0f%%", pct(after.rss-before.rss, before.rss)))
	row("after the check: goroutines, heap (not judged)", "-", fmt.Sprintf("%.0f, %s", checked.goroutines, mb(checked.heap)),
		fmt.Sprintf("%+.0f%%", pct(checked.heap-before.heap, before.heap)))
	row("resources settled after", "-", after.at.Sub(s.loadEnd).Round(time.Second).String(), "-")
	fmt.Fprintf(&b, "during the load (every 5 s): at most %.0f ssh and %.0f postgres sessions live, %.0f goroutines, %.0f descriptors, %s heap in use, %s resident; %.1f s of broker CPU (%.2f cores)\n",
		peak.liveSSH, peak.livePG, peak.goroutines, peak.fds, mb(peak.heap), mb(peak.rss), peak.cpu, peak.cpu/load.Seconds())
	fmt.Fprintf(&b, "upload backlog: at most %.0f chunks waiting, the oldest %.0f s; spool empty %v after the load\n",
		peak.spool, peak.lag, s.quietAfter.Round(time.Second))
	return b.String()
}

// goroutineDump stops the broker with SIGQUIT, which makes the Go runtime
// print every goroutine, and summarizes them by where they wait.
func (s *soak) goroutineDump() string {
	_ = s.b.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.b.done:
	case <-time.After(10 * time.Second):
	}
	logs := s.b.logs.String()
	i := strings.Index(logs, "goroutine ")
	if i < 0 {
		return "(no dump)"
	}
	counts := map[string]int{}
	for _, g := range strings.Split(logs[i:], "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		// The state, the innermost frame of ours and who created it.
		state := lines[0][strings.Index(lines[0], "["):]
		key := state
		for _, l := range lines[1:] {
			if strings.Contains(l, "custos-pam/custos/") && !strings.HasPrefix(strings.TrimSpace(l), "/") {
				key += " " + strings.TrimSpace(l)
				break
			}
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "created by ") {
				key += " | " + l
			}
		}
		counts[key]++
	}
	var out []string
	for k, n := range counts {
		out = append(out, fmt.Sprintf("%3d %s", n, k))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// soakPeak is what the broker used while the clients ran: the highest
// goroutines, descriptors, heap and resident memory seen (every 5 s), and
// its CPU time over the load.
type soakPeak struct {
	goroutines, fds, heap, rss float64
	cpu                        float64 // seconds of CPU during the load
	liveSSH, livePG            float64
	// spool and lag: the most chunks waiting for upload, the oldest's age.
	spool, lag float64
	// done closes when the sampler has stopped; read the fields after.
	done chan struct{}
}

// watchPeak samples /metrics every 5 s until ctx ends.
func (s *soak) watchPeak(ctx context.Context) *soakPeak {
	p := &soakPeak{done: make(chan struct{})}
	done := p.done
	scrape := func() string {
		resp, err := readyClient.Get(s.b.url + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	cpu0, _ := sample(scrape(), "process_cpu_seconds_total")
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			body := scrape()
			for dst, name := range map[*float64]string{&p.goroutines: "go_goroutines", &p.fds: "process_open_fds",
				&p.heap: "go_memstats_heap_inuse_bytes", &p.rss: "process_resident_memory_bytes",
				&p.liveSSH: `custos_sessions_active{protocol="ssh"}`, &p.livePG: `custos_sessions_active{protocol="postgres"}`,
				&p.spool: "custos_recorder_spool_chunks", &p.lag: "custos_recorder_upload_lag_seconds"} {
				if v, ok := sample(body, name); ok && v > *dst {
					*dst = v
				}
			}
			if v, ok := sample(body, "process_cpu_seconds_total"); ok {
				p.cpu = v - cpu0
			}
		}
	}()
	return p
}

// saveProfiles writes the broker's heap profile and goroutine list to
// SOAK_PROFILES/<tag>-heap.pprof and <tag>-goroutine.txt when that is
// set (make soak sets it to .dev/soak-profiles), for
// `go tool pprof -sample_index=inuse_space -top` and a diff of the two.
// It is taken after the sample it explains, since fetching the heap
// profile with gc=1 makes the broker collect first (so the profile shows
// what is live, not what was live two collections ago).
func (s *soak) saveProfiles(ctx context.Context, tag string) {
	dir := os.Getenv("SOAK_PROFILES")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Logf("profiles: %v", err)
		return
	}
	a := s.api()
	defer a.http.CloseIdleConnections()
	for name, path := range map[string]string{"heap.pprof": "/api/v1/debug/pprof/heap?gc=1", "goroutine.txt": "/api/v1/debug/pprof/goroutine?debug=1"} {
		body, err := a.get(ctx, path)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, tag+"-"+name), body, 0o644)
		}
		if err != nil {
			s.t.Logf("profile %s: %v", name, err)
		}
	}
}
