//go:build soak

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// cli runs the custos CLI as user; safe from any goroutine (it never
// fails the test itself).
func (s *soak) cli(user string, args ...string) (string, error) {
	s.b.mu.Lock()
	home := s.b.homes[user]
	s.b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, custosBin, args...)
	cmd.Env = append(append(os.Environ(), "CUSTOS_URL="+s.b.url, "CUSTOS_CONFIG_DIR="+home), s.b.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("custos %s as %s: %v: %s", strings.Join(args[:min(2, len(args))], " "), user, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// grant has a lane user request their lane's target and bob approve it.
func (s *soak) grant(user string) {
	target, role := "demo-pg", "readonly"
	if strings.HasPrefix(user, "ssh") {
		target, role = "demo-ssh", "ops"
	}
	for attempt := 0; ; attempt++ {
		id, err := s.tryGrant(user, target, role)
		if err == nil {
			s.mu.Lock()
			s.grants[user] = id
			s.mu.Unlock()
			return
		}
		if attempt == 4 {
			s.problem("grant for %s: %v", user, err)
			return
		}
		time.Sleep(time.Second)
	}
}

func (s *soak) tryGrant(user, target, role string) (string, error) {
	out, err := s.cli(user, "request", target, "--role", role, "--for", "90m", "--reason", "SOAK-1", "-o", "json")
	if err != nil {
		return "", err
	}
	var req jsonRequest
	if err := json.Unmarshal([]byte(out), &req); err != nil {
		return "", fmt.Errorf("request: %w", err)
	}
	out, err = s.cli("bob", "approve", req.ID, "-o", "json")
	if err != nil {
		return "", err
	}
	var d decided
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Grant == nil {
		return "", fmt.Errorf("approve: %v %q", err, out)
	}
	return d.Grant.ID, nil
}

// revoke ends a lane user's grant, as the user would when done.
func (s *soak) revoke(user string) {
	s.mu.Lock()
	id := s.grants[user]
	s.grants[user] = ""
	s.mu.Unlock()
	if id == "" {
		return
	}
	if _, err := s.cli(user, "revoke", id, "--reason", "soak: lane revoked"); err != nil {
		s.problem("revoke %s: %v", user, err)
	}
}

// granted reports whether user's lane holds a grant now.
func (s *soak) granted(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants[user] != ""
}

// waitGranted waits until user's lane holds a grant; false when ctx ends.
func (s *soak) waitGranted(ctx context.Context, user string) bool {
	for !s.granted(user) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
	return true
}

// revoker revokes one lane's grant every revokeEvery, taking PostgreSQL
// and SSH lanes in turn, and grants it again three seconds later: the
// lane's running sessions end with "access revoked" and its clients come
// back under the new grant.
func (s *soak) revoker(ctx context.Context, deadline time.Time) {
	var order []string
	for i := range max(len(s.pgUsers), len(s.sshUsers)) {
		if i < len(s.pgUsers) {
			order = append(order, s.pgUsers[i])
		}
		if i < len(s.sshUsers) {
			order = append(order, s.sshUsers[i])
		}
	}
	tick := time.NewTicker(s.k.revokeEvery)
	defer tick.Stop()
	for n := 0; len(order) > 0; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Until(deadline) < 10*time.Second {
			return
		}
		u := order[n%len(order)]
		s.revoke(u)
		s.mu.Lock()
		s.revoked++
		s.mu.Unlock()
		time.Sleep(3 * time.Second)
		s.grant(u)
	}
}

// soakPGRun is one pgbench process of a lane.
type soakPGRun struct {
	user string
	// tx is the transactions pgbench logged per client (-l), index = client.
	tx []int64
	// failed: pgbench did not exit 0 (its lane was revoked, or it could
	// not connect).
	failed bool
	out    string
}

// pgLane runs pgbench for a lane until deadline, again with a fresh
// connection token whenever a revocation ended the previous run.
func (s *soak) pgLane(ctx context.Context, user string, clients int, deadline time.Time) {
	for run := 0; ; run++ {
		secs := int(time.Until(deadline).Seconds())
		if secs < 3 || !s.waitGranted(ctx, user) {
			return
		}
		if secs = int(time.Until(deadline).Seconds()); secs < 3 {
			return
		}
		token, err := s.cli(user, "db", "token", "demo-pg")
		if err != nil {
			if s.granted(user) {
				s.problem("db token %s: %v", user, err)
			}
			time.Sleep(time.Second)
			continue
		}
		prefix := filepath.Join(s.dir, fmt.Sprintf("pgbench-%s-%03d", user, run))
		rctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+2*time.Minute)
		cmd := exec.CommandContext(rctx, "pgbench", "-n", "-M", "simple", "-c", strconv.Itoa(clients), "-j", "1",
			"-T", strconv.Itoa(secs), "-R", strconv.FormatFloat(s.k.pgRate*float64(clients), 'f', 2, 64),
			"-f", s.pgScript, "-l", "--log-prefix", prefix,
			"-h", "127.0.0.1", "-p", strconv.Itoa(s.pgPort), "-U", user, "demo-pg")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+strings.TrimSpace(token), "PGSSLMODE=require", "PGCONNECT_TIMEOUT=10")
		out, err := cmd.CombinedOutput()
		if rctx.Err() != nil {
			s.problem("pgbench %s run %d did not end in time", user, run)
		}
		cancel()
		r := soakPGRun{user: user, tx: make([]int64, clients), failed: err != nil, out: string(out)}
		files, _ := filepath.Glob(prefix + ".*")
		for _, f := range files {
			if err := countPgbenchLog(f, r.tx); err != nil {
				s.problem("pgbench log %s: %v", f, err)
			}
		}
		s.mu.Lock()
		s.pgRuns = append(s.pgRuns, r)
		s.mu.Unlock()
		if r.failed {
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// countPgbenchLog adds the transactions of a pgbench -l log (one line per
// transaction: client_id transaction_no time script_no epoch us [lag]).
func countPgbenchLog(path string, tx []int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		c, err := strconv.Atoi(fields[0])
		if err != nil || c < 0 || c >= len(tx) {
			return fmt.Errorf("bad line %q", sc.Text())
		}
		if fields[2] == "skipped" || fields[2] == "failed" {
			continue
		}
		tx[c]++
	}
	return sc.Err()
}

// soakSSHRun is one ssh or scp invocation of a worker.
type soakSSHRun struct {
	user string
	kind string // shell, exec, up, down
	// marker names the run: the client sends it as LC_CUSTOS_SOAK (an
	// env request the recording keeps), and in the command or typed input.
	marker string
	// file is the marker in the scp file's name (a download's is the
	// upload's).
	file string
	// sent is what the client wrote to ssh's stdin; received what ssh
	// wrote to its stdout (the target's output; -q keeps ssh's own
	// notices off, and they go to stderr).
	sent, received int64
	// size and sum are the file's length and SHA-256 for scp.
	size int64
	sum  string
	exit int
	// started: the client got past authentication (it received output,
	// or it exited 0).
	errText string
}

// sshWorker runs ssh and scp jobs for its lane user until deadline.
func (s *soak) sshWorker(ctx context.Context, w int, user string, deadline time.Time, delay time.Duration) {
	time.Sleep(delay)
	var uploads []soakSSHRun
	kinds := []string{"shell", "exec", "up", "shell", "exec", "down"}
	for r := 0; ; r++ {
		kind := kinds[(w+r)%len(kinds)]
		if kind == "down" && len(uploads) == 0 {
			kind = "exec"
		}
		// A job takes about 15 s; none starts that would run past the end.
		if time.Until(deadline) < 15*time.Second || !s.waitGranted(ctx, user) {
			return
		}
		marker := fmt.Sprintf("cs%03dx%04d", w, r)
		var run soakSSHRun
		switch kind {
		case "shell":
			run = s.sshShell(ctx, user, marker)
		case "exec":
			run = s.sshExec(ctx, user, marker, 10, 2000+int(cheapRand(w, r)%20000))
		case "up":
			run = s.scpUp(ctx, user, marker, 32<<10+int64(cheapRand(w, r)%(1<<20)))
			if run.exit == 0 {
				uploads = append(uploads, run)
			}
		case "down":
			run = s.scpDown(ctx, user, marker, uploads[0])
			uploads = uploads[1:]
		}
		s.mu.Lock()
		s.sshRuns = append(s.sshRuns, run)
		s.mu.Unlock()
		if run.exit != 0 {
			time.Sleep(time.Second)
		}
	}
}

// cheapRand is a deterministic spread of sizes per worker and run.
func cheapRand(w, r int) uint64 {
	x := uint64(w*7919+r*104729) + 0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	return x
}

// sshOpts are the ssh options every soak client uses, with the port
// flag of the program (-p for ssh, -P for scp).
func (s *soak) sshOpts(user, portFlag, marker string) []string {
	return []string{"-q", "-i", s.keys[user], portFlag, strconv.Itoa(s.sshPort), "-o", "SetEnv=" + soakEnv + "=" + marker, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"}
}

// soakEnv is the variable that carries a run's marker (LC_* passes the
// proxy's default environment allow-list).
const soakEnv = "LC_CUSTOS_SOAK"

// counter counts what passes through it.
type counter struct{ n atomic.Int64 }

func (c *counter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// sshExec runs a command printing size random bytes (base64) once a
// second, iters times.
func (s *soak) sshExec(ctx context.Context, user, marker string, iters, size int) soakSSHRun {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	remote := fmt.Sprintf(": %s; i=0; while [ $i -lt %d ]; do head -c %d /dev/urandom | base64; sleep 1; i=$((i+1)); done", marker, iters, size)
	cmd := exec.CommandContext(ctx, "ssh", append(s.sshOpts(user, "-p", marker), "-n", "demo-ssh@127.0.0.1", remote)...)
	var out counter
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return soakSSHRun{user: user, kind: "exec", marker: marker, received: out.n.Load(), exit: exitCode(err), errText: tail(errb.String())}
}

// sshShell types a few commands into an interactive shell on a pty
// (ssh -tt), a second or two apart, then exit.
func (s *soak) sshShell(ctx context.Context, user, marker string) soakSSHRun {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(s.sshOpts(user, "-p", marker), "-tt", "-e", "none", "demo-ssh@127.0.0.1")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return soakSSHRun{user: user, kind: "shell", marker: marker, exit: -1, errText: err.Error()}
	}
	var out counter
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return soakSSHRun{user: user, kind: "shell", marker: marker, exit: -1, errText: err.Error()}
	}
	var sent atomic.Int64
	typed := make(chan struct{})
	go func() {
		defer close(typed)
		lines := []string{"echo " + marker, "seq 1 400", "sleep 2", "ls -l /usr/bin | head -60", "sleep 1",
			"head -c 3000 /dev/urandom | base64", "sleep 2", "echo done-" + marker, "exit"}
		for _, l := range lines {
			select {
			case <-ctx.Done():
				return
			case <-time.After(1500 * time.Millisecond):
			}
			n, err := io.WriteString(stdin, l+"\n")
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	<-typed
	return soakSSHRun{user: user, kind: "shell", marker: marker, sent: sent.Load(), received: out.n.Load(), exit: exitCode(err), errText: tail(errb.String())}
}

// scpUp writes size random bytes to a local file and uploads it to
// remoteDir/<marker>.bin.
func (s *soak) scpUp(ctx context.Context, user, marker string, size int64) soakSSHRun {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	local := filepath.Join(s.dir, marker+".up")
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		return soakSSHRun{user: user, kind: "up", marker: marker, exit: -1, errText: err.Error()}
	}
	defer os.Remove(local)
	sum := sha256.Sum256(data)
	cmd := exec.CommandContext(ctx, "scp", append(s.sshOpts(user, "-P", marker), local, "demo-ssh@127.0.0.1:"+filepath.Join(s.remoteDir, marker+".bin"))...)
	out, err := cmd.CombinedOutput()
	return soakSSHRun{user: user, kind: "up", marker: marker, file: marker, size: size, sum: hex.EncodeToString(sum[:]), exit: exitCode(err), errText: tail(string(out))}
}

// scpDown downloads a file an earlier run uploaded; it should arrive
// with the length and digest it was uploaded with.
func (s *soak) scpDown(ctx context.Context, user, marker string, up soakSSHRun) soakSSHRun {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	local := filepath.Join(s.dir, up.marker+".down")
	defer os.Remove(local)
	cmd := exec.CommandContext(ctx, "scp", append(s.sshOpts(user, "-P", marker), "demo-ssh@127.0.0.1:"+filepath.Join(s.remoteDir, up.marker+".bin"), local)...)
	out, err := cmd.CombinedOutput()
	run := soakSSHRun{user: user, kind: "down", marker: marker, file: up.marker, exit: exitCode(err), errText: tail(string(out))}
	if data, rerr := os.ReadFile(local); rerr == nil {
		sum := sha256.Sum256(data)
		run.size, run.sum = int64(len(data)), hex.EncodeToString(sum[:])
	}
	return run
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[len(s)-300:]
	}
	return s
}

// warmUp runs one of everything the soak does, on the first lanes,
// before the baseline is taken, then ends those grants.
func (s *soak) warmUp() {
	t := s.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var users []string
	if len(s.sshUsers) > 0 {
		u := s.sshUsers[0]
		users = append(users, u)
		s.grant(u)
		if r := s.sshExec(ctx, u, "warmup", 1, 100); r.exit != 0 {
			t.Fatalf("warm-up ssh: exit %d: %s\nbroker log:\n%s", r.exit, r.errText, s.b.logs)
		}
	}
	if len(s.pgUsers) > 0 {
		u := s.pgUsers[0]
		users = append(users, u)
		s.grant(u)
		token, err := s.cli(u, "db", "token", "demo-pg")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, "pgbench", "-n", "-c", "2", "-T", "2", "-f", s.pgScript,
			"-h", "127.0.0.1", "-p", strconv.Itoa(s.pgPort), "-U", u, "demo-pg")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+strings.TrimSpace(token), "PGSSLMODE=require", "PGCONNECT_TIMEOUT=10")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("warm-up pgbench: %v\n%s\nbroker log:\n%s", err, out, s.b.logs)
		}
	}
	for _, u := range users {
		s.revoke(u)
	}
	s.mu.Lock()
	problems := s.problems
	s.mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("warm-up: %v", problems)
	}
	// Let the warm-up sessions close and upload.
	s.waitQuiet(ctx)
}
