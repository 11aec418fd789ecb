package devstack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// processSpec describes one component process.
type processSpec struct {
	// Name labels the process in errors and names its log and pid files.
	Name string
	Path string
	Args []string
	// Env is added to a minimal environment (PATH, LANG).
	Env []string
	Dir string
	// LogPath receives stdout and stderr.
	LogPath string
	// RunAs, when set and we are root, runs the process as that user.
	RunAs *syscall.Credential
	// Detached starts the process in its own session, outliving us (make up).
	// Otherwise it gets its own process group and dies with us.
	Detached bool
	// StopSignal asks the process to exit. Default: SIGTERM.
	StopSignal syscall.Signal
}

// process is a started component.
type process struct {
	name       string
	pid        int
	logPath    string
	stopSignal syscall.Signal
	// done is closed when the process exits; nil for detached processes.
	done chan struct{}
	err  error
}

// registry holds attached processes so Main can stop them.
var registry struct {
	sync.Mutex
	procs []*process
}

func startProcess(spec processSpec) (*process, error) {
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	logFile, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	defer logFile.Close()
	// Logs are appended across restarts: mark where this run begins.
	fmt.Fprintf(logFile, "--- devstack: starting %s at %s\n", spec.Name, time.Now().UTC().Format(time.RFC3339))
	if spec.RunAs != nil {
		// The child writes to the inherited descriptor; ownership only
		// matters for people reading the log later.
		_ = os.Chown(spec.LogPath, int(spec.RunAs.Uid), int(spec.RunAs.Gid))
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(baseEnv(), spec.Env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	attr := &syscall.SysProcAttr{Credential: spec.RunAs}
	if spec.Detached {
		attr.Setsid = true
	} else {
		attr.Setpgid = true
		attr.Pdeathsig = syscall.SIGKILL
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &process{
		name:       spec.Name,
		pid:        cmd.Process.Pid,
		logPath:    spec.LogPath,
		stopSignal: spec.StopSignal,
		done:       make(chan struct{}),
	}
	if p.stopSignal == 0 {
		p.stopSignal = syscall.SIGTERM
	}
	if spec.Detached {
		// Nobody waits for it here: it belongs to its own session.
		_ = cmd.Process.Release()
		p.done = nil
		return p, nil
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	registry.Lock()
	registry.procs = append(registry.procs, p)
	registry.Unlock()
	return p, nil
}

// baseEnv is what every component starts with: no inherited secrets or
// client settings (PGHOST, VAULT_TOKEN, ...) that could point it elsewhere.
func baseEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return []string{"PATH=" + path, "LANG=C.UTF-8", "TZ=UTC"}
}

// exited reports whether an attached process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failure describes an exited process with the tail of its log.
func (p *process) failure() error {
	return fmt.Errorf("%s exited (%v); log %s:\n%s", p.name, p.err, p.logPath, logTail(p.logPath, 20))
}

// stop signals the process, waits up to grace, then kills the process, its
// group and any descendants that started sessions of their own (sshd's
// per-connection children do).
func (p *process) stop(grace time.Duration) {
	descendants := descendantsOf(p.pid)
	_ = syscall.Kill(p.pid, p.stopSignal)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	killAll(descendants)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// killAll sends SIGKILL to pids and waits up to two seconds for them to go.
func killAll(pids []int) {
	for _, d := range pids {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, d := range pids {
		for alive(d) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stopAll stops every attached process, newest first.
func stopAll() {
	registry.Lock()
	procs := registry.procs
	registry.procs = nil
	registry.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *process) {
			defer wg.Done()
			p.stop(10 * time.Second)
		}(procs[i])
	}
	wg.Wait()
}

// unregister drops a process stopped by a test cleanup.
func unregister(p *process) {
	registry.Lock()
	defer registry.Unlock()
	for i, q := range registry.procs {
		if q == p {
			registry.procs = append(registry.procs[:i], registry.procs[i+1:]...)
			return
		}
	}
}

// descendantsOf lists the pids below pid in the process tree, read from /proc.
func descendantsOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], child)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls check until it succeeds, the process exits or timeout passes.
func waitFor(p *process, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = check(); err == nil {
			return nil
		}
		if p != nil && p.done != nil && p.exited() {
			return p.failure()
		}
		if p != nil && p.done == nil && !alive(p.pid) {
			return fmt.Errorf("%s exited; log %s:\n%s", p.name, p.logPath, logTail(p.logPath, 20))
		}
		if time.Now().After(deadline) {
			if p != nil {
				return fmt.Errorf("%s not ready after %s: %w; log %s:\n%s", p.name, timeout, err, p.logPath, logTail(p.logPath, 20))
			}
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || !bytes.HasPrefix(bytes.TrimSpace(stat[i+1:]), []byte("Z"))
}
