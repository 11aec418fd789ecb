package systemd

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
)

const (
	unitFile    = "custos.service"
	installedAt = "/usr/local/bin/custos" // the unit's ExecStart binary
	// maxExposure is the highest `systemd-analyze security` exposure
	// (0.0 safest, 10.0 unprotected) the unit may score.
	maxExposure = 2.0
)

// unit is a parsed unit file: each "Key=value" line of each section, in
// order, keyed "Section.Key".
type unit map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u, section := unit{}, ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not Key=value: %q", path, line)
			}
			u[section+"."+strings.TrimSpace(k)] = append(u[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// last is the effective value of a single-valued key.
func (u unit) last(key string) (string, bool) {
	v := u[key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// testableCopy writes the unit into a scratch directory under its own
// name with ExecStart pointing at a scratch executable, since
// systemd-analyze verify refuses a unit whose binary does not exist, and
// returns the copy's path. edit, if set, changes the text first.
func testableCopy(t *testing.T, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "custos")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.Contains(text, "ExecStart="+installedAt+" ") {
		t.Fatalf("%s: ExecStart does not run %s", unitFile, installedAt)
	}
	text = strings.ReplaceAll(text, "ExecStart="+installedAt+" ", "ExecStart="+bin+" ")
	if edit != nil {
		text = edit(text)
	}
	path := filepath.Join(dir, unitFile)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// systemdAnalyze runs systemd-analyze with args and returns its combined
// output and exit error.
func systemdAnalyze(t *testing.T, args ...string) (string, error) {
	t.Helper()
	devstack.Require(t, "systemd-analyze", "apt-get install systemd")
	bin, err := devstack.ToolPath("systemd-analyze")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestUnitVerifies: systemd-analyze verify accepts the unit without a
// single complaint. verify exits 0 on unknown keys and unparsable values
// (it only warns that it ignores them), so any output fails the test; the
// second case proves such a warning is seen.
func TestUnitVerifies(t *testing.T) {
	out, err := systemdAnalyze(t, "verify", "--man=no", testableCopy(t, nil))
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}

	broken := testableCopy(t, func(s string) string {
		return strings.Replace(s, "ProtectHome=yes", "ProtectHome=yes\nProtectHomee=yes\nProtectSystem=strictest", 1)
	})
	out, _ = systemdAnalyze(t, "verify", "--man=no", broken)
	if !strings.Contains(out, "ProtectHomee") || !strings.Contains(out, "strictest") {
		t.Fatalf("systemd-analyze verify did not report a misspelt key and a bad value:\n%s", out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestUnitHardening: systemd's own assessment of the sandbox scores the
// unit at most maxExposure, and the settings the operations guide
// promises are there.
func TestUnitHardening(t *testing.T) {
	path := testableCopy(t, nil)
	threshold := strconv.Itoa(int(maxExposure * 10))
	out, err := systemdAnalyze(t, "security", "--offline=yes", "--threshold="+threshold, path)
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level (%v):\n%s", err, out)
	}
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure %s is above %.1f:\n%s", m[1], maxExposure, out)
	}
	t.Logf("systemd-analyze security: exposure %s (at most %.1f allowed)", m[1], maxExposure)

	// The same unit stripped of its sandbox must fail, or the threshold
	// proves nothing.
	weak := testableCopy(t, func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "Protect") && !strings.HasPrefix(l, "Restrict") && !strings.HasPrefix(l, "SystemCall") &&
				!strings.HasPrefix(l, "Private") && !strings.HasPrefix(l, "CapabilityBoundingSet") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	})
	if out, err := systemdAnalyze(t, "security", "--offline=yes", "--threshold="+threshold, weak); err == nil {
		t.Fatalf("an unsandboxed copy of the unit passed the threshold:\n%s", out)
	}

	u := readUnit(t, unitFile)
	for key, want := range map[string]string{
		"Service.Type": "exec", "Service.User": "custos", "Service.Group": "custos",
		"Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict", "Service.ProtectHome": "yes",
		"Service.PrivateTmp": "yes", "Service.CapabilityBoundingSet": "", "Service.AmbientCapabilities": "",
		"Service.UMask": "0077", "Service.Restart": "on-failure", "Service.MemoryDenyWriteExecute": "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "Service.StateDirectory": "custos",
		"Service.EnvironmentFile": "/etc/custos/custos.env",
	} {
		if got, ok := u.last(key); !ok || got != want {
			t.Errorf("%s: %s=%q, want %q", unitFile, key, got, want)
		}
	}
	// custos serve re-reads its config on SIGHUP (cmd/custos
	// TestReloadEndToEnd); systemctl reload sends it to the main process.
	if got, ok := u.last("Service.ExecReload"); !ok || got != "/bin/kill -HUP $MAINPID" {
		t.Errorf("%s: ExecReload=%q, want /bin/kill -HUP $MAINPID", unitFile, got)
	}
}

// TestSysusersCreatesUser: systemd-sysusers, run on the entry in a
// scratch root, creates the custos system user and group with the state
// directory as home and no login shell.
func TestSysusersCreatesUser(t *testing.T) {
	devstack.Require(t, "systemd-sysusers", "apt-get install systemd")
	bin, err := devstack.ToolPath("systemd-sysusers")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("custos.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--root="+root, abs).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	user := regexp.MustCompile(`(?m)^custos:x:(\d+):(\d+):[^:]*:/var/lib/custos:/usr/sbin/nologin$`).FindSubmatch(passwd)
	if user == nil {
		t.Fatalf("no custos user with home /var/lib/custos and no shell in:\n%s", passwd)
	}
	if uid, _ := strconv.Atoi(string(user[1])); uid == 0 || uid >= 1000 {
		t.Errorf("custos uid %d is not a system uid", uid)
	}
	if !regexp.MustCompile(`(?m)^custos:x:` + string(user[2]) + `:`).Match(group) {
		t.Errorf("no custos group with gid %s in:\n%s", user[2], group)
	}
}

// TestProductionConfigFitsUnit: the hardened example config runs under
// the unit as it is: the config path is ExecStart's, everything the
// broker writes is inside a writable path, every listener is an
// unprivileged port (the unit has no capabilities), and the environment
// file template names exactly the env: secrets the config refers to.
func TestProductionConfigFitsUnit(t *testing.T) {
	u := readUnit(t, unitFile)
	execStart, _ := u.last("Service.ExecStart")
	if !strings.HasSuffix(execStart, " serve --config /etc/custos/custos.yaml") {
		t.Errorf("ExecStart=%s does not serve /etc/custos/custos.yaml", execStart)
	}
	writable := append([]string(nil), u["Service.ReadWritePaths"]...)
	for _, d := range u["Service.StateDirectory"] {
		writable = append(writable, "/var/lib/"+d)
	}

	text, err := os.ReadFile("../custos.production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]string{"listen.data_dir": c.Listen.DataDir, "recording.spool_dir": c.Recording.SpoolDir}
	if c.Store.Driver == "sqlite" {
		written["store.path"] = filepath.Dir(c.Store.Path)
	}
	if c.Recording.Store == "local" {
		written["recording.dir"] = c.Recording.Dir
	}
	for field, dir := range written {
		if !under(dir, writable) {
			t.Errorf("%s %s is not under the unit's writable paths %v", field, dir, writable)
		}
	}
	for field, addr := range map[string]string{"listen.http": c.Listen.HTTP, "listen.ssh": c.Listen.SSH, "listen.postgres": c.Listen.Postgres} {
		if addr == "" {
			continue
		}
		_, port, _ := net.SplitHostPort(addr)
		if p, err := strconv.Atoi(port); err != nil || p < 1024 {
			t.Errorf("%s %s: the unit holds no CAP_NET_BIND_SERVICE; use a port from 1024", field, addr)
		}
	}

	refs := map[string]bool{}
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range regexp.MustCompile(`env:([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(line, -1) {
			refs[m[1]] = true
		}
	}
	env, err := os.ReadFile("custos.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			defined[strings.TrimSpace(k)] = true
		}
	}
	if len(refs) == 0 {
		t.Fatal("the production config names no env: secrets")
	}
	for k := range refs {
		if !defined[k] {
			t.Errorf("custos.env.example does not define %s, which the production config reads", k)
		}
	}
	for k := range defined {
		if !refs[k] {
			t.Errorf("custos.env.example defines %s, which the production config does not read", k)
		}
	}
}

// under reports whether dir is one of roots or inside one.
func under(dir string, roots []string) bool {
	dir = filepath.Clean(dir)
	for _, r := range roots {
		r = filepath.Clean(strings.TrimPrefix(r, "-"))
		if dir == r || strings.HasPrefix(dir, r+"/") {
			return true
		}
	}
	return false
}
