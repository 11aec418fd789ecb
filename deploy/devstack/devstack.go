package devstack

import (
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// InstallHint tells a developer how to get the missing components.
const InstallHint = "run `make tools` (deploy/dev/install.sh) to install and build them"

// Main runs the package's tests and stops every component started. Use:
//
//	func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }
func Main(m *testing.M) int {
	// A panicking test or a -timeout kills the binary without running
	// this; the parent-death signal then takes the components down.
	defer cleanupAll()
	return m.Run()
}

// cleanupAll stops every attached process and removes the shared work dir.
func cleanupAll() {
	stopAll()
	base.Lock()
	dir := base.dir
	base.dir = ""
	base.Unlock()
	if dir != "" && os.Getenv("CUSTOS_DEVSTACK_KEEP") == "" {
		_ = os.RemoveAll(dir)
	}
}

// base is the per-test-binary work dir holding shared components' data.
var base struct {
	sync.Mutex
	dir string
}

// workDir returns a fresh directory under the shared work dir. Directories
// are world-traversable so components running as another user (postgres)
// can reach their own subdirectory.
func workDir(name string) (string, error) {
	base.Lock()
	defer base.Unlock()
	if base.dir == "" {
		d, err := os.MkdirTemp("", "custos-devstack-")
		if err != nil {
			return "", fmt.Errorf("devstack: work dir: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return "", fmt.Errorf("devstack: work dir: %w", err)
		}
		base.dir = d
	}
	d, err := os.MkdirTemp(base.dir, name+"-")
	if err != nil {
		return "", fmt.Errorf("devstack: work dir: %w", err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		return "", fmt.Errorf("devstack: work dir: %w", err)
	}
	return d, nil
}

// inCI reports whether missing components must fail rather than skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// Require skips the test, or fails it when CI=true, unless the tool named
// what is found by ToolPath. installHint says how to get it, for example
// "apt-get install -y postgresql-client-15".
func Require(tb testing.TB, what, installHint string) {
	tb.Helper()
	if _, err := ToolPath(what); err == nil {
		return
	}
	unavailable(tb, fmt.Sprintf("%s not found (looked in $CUSTOS_TOOLS_BIN, %s and $PATH); %s", what, CacheBinDir(), installHint))
}

// unavailable skips, or fails under CI=true, with msg.
func unavailable(tb testing.TB, msg string) {
	tb.Helper()
	if inCI() {
		tb.Fatalf("devstack: %s (CI=true: missing components fail)", msg)
	}
	tb.Skipf("devstack: %s", msg)
}

// ErrToolNotFound is returned by ToolPath when a tool is nowhere to be found.
var ErrToolNotFound = errors.New("tool not found")

// CacheBinDir is where deploy/dev/install.sh puts the tools it builds:
// ${XDG_CACHE_HOME:-$HOME/.cache}/custos/bin.
func CacheBinDir() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/root"
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "custos", "bin")
}

// extraToolDirs are searched after $PATH: Debian keeps PostgreSQL's server
// binaries and sshd outside a normal user's PATH.
var extraToolDirs = []string{"/usr/lib/postgresql/15/bin", "/usr/sbin", "/usr/local/sbin", "/usr/lib/openssh"}

// ToolPath finds an executable: first in $CUSTOS_TOOLS_BIN, then in the
// cache dir (CacheBinDir), then in $PATH, then in the PostgreSQL 15 and
// sbin directories.
func ToolPath(name string) (string, error) {
	var dirs []string
	if d := os.Getenv("CUSTOS_TOOLS_BIN"); d != "" {
		dirs = append(dirs, filepath.SplitList(d)...)
	}
	dirs = append(dirs, CacheBinDir())
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range extraToolDirs {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrToolNotFound, name)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := freePort()
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	return p
}

func freePort() (int, error) {
	// A port below the kernel's ephemeral range (32768 and up on Linux)
	// is never handed to an outgoing connection or another listener on
	// port 0 between the check and the component's own bind, as one from
	// port 0 can be.
	for range 50 {
		p := freePortLow + mathrand.IntN(freePortHigh-freePortLow)
		if portFree(p) {
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// The range FreePort picks from first.
const (
	freePortLow  = 20000
	freePortHigh = 32000
)

// portFree reports whether port can be listened on at 127.0.0.1.
func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// RepoRoot is the repository's root directory (the one holding go.mod).
func RepoRoot() string {
	if d := os.Getenv("CUSTOS_REPO_ROOT"); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if ok && !isTrimmed(file) {
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	}
	// Built with -trimpath: walk up from the working directory.
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && !st.IsDir() {
			if _, err := os.Stat(filepath.Join(d, "deploy", "devstack")); err == nil {
				return d
			}
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

func isTrimmed(file string) bool { return !filepath.IsAbs(file) }
