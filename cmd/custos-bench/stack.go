package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stack is the running `make up` stack the driver measures: its .dev/env,
// the broker's pid and the grants the scenarios use.
type stack struct {
	root, dev string
	env       map[string]string
	custos    string // the CLI binary (bin/custos)
	brokerPID int
	pgPID     int
	pgToken   string
	// adminToken is sam's (security admin) API token, for gc=1 on the
	// heap profile; empty when the stack does not serve profiles.
	adminToken string
	tmp        string
	started    bool // the driver ran deploy/dev/up.sh itself
	// api is the one HTTPS client for the broker's /metrics and
	// profiles, reused so that polling holds one connection, not one
	// per poll (they would count in the idle-memory figures).
	api *http.Client
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, "'")
		}
		env[k] = v
	}
	return env, sc.Err()
}

func readPID(dev, name string) int {
	b, err := os.ReadFile(filepath.Join(dev, "pids", name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// openStack reuses a running `make up` stack or starts one with
// deploy/dev/up.sh (which also rebuilds bin/custos).
func openStack(root string) (*stack, error) {
	s := &stack{root: root, dev: filepath.Join(root, ".dev"), custos: filepath.Join(root, "bin", "custos")}
	if readPID(s.dev, "custos") == 0 {
		logf("bench: no running stack; starting it with deploy/dev/up.sh")
		cmd := exec.Command(filepath.Join(root, "deploy/dev/up.sh"))
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("bench: up: %w\n%s", err, tail(out, 2000))
		}
		s.started = true
	} else {
		logf("bench: reusing the running stack in .dev")
	}
	env, err := readEnv(filepath.Join(s.dev, "env"))
	if err != nil {
		return nil, fmt.Errorf("bench: env: %w", err)
	}
	s.env = env
	if s.brokerPID = readPID(s.dev, "custos"); s.brokerPID == 0 {
		return nil, fmt.Errorf("bench: the broker is not running (see .dev/logs/custos.log)")
	}
	s.pgPID = readPID(s.dev, "postgres")
	s.tmp, err = os.MkdirTemp("", "custos-bench-")
	if err != nil {
		return nil, err
	}
	// pgbouncer runs as postgres and reads its files here.
	if err := os.Chmod(s.tmp, 0o755); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *stack) close() {
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
	if s.started {
		cmd := exec.Command(filepath.Join(s.root, "deploy/dev/down.sh"))
		cmd.Dir = s.root
		if out, err := cmd.CombinedOutput(); err != nil {
			logf("bench: down: %v\n%s", err, tail(out, 500))
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// cli runs bin/custos as user (its own config dir under the temp dir).
func (s *stack) cli(user, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.custos, args...)
	cmd.Env = append(os.Environ(), "CUSTOS_URL="+s.env["CUSTOS_URL"], "CUSTOS_CA_CERT="+s.env["CUSTOS_CA_CERT"],
		"CUSTOS_CONFIG_DIR="+filepath.Join(s.tmp, "cli", user))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("custos %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// grant has alice request target/role and bob (and carol) approve it.
func (s *stack) grant(target, role string) error {
	for _, u := range []string{"alice", "bob", "carol"} {
		if _, err := s.cli(u, s.env["CUSTOS_DEMO_PASSWORD"]+"\n", "login", "--user", u, "--password-stdin"); err != nil {
			return err
		}
	}
	// 4h (readwrite's longest in the dev config): a full run takes
	// about two hours and every scenario needs the grant to hold.
	out, err := s.cli("alice", "", "request", target, "--role", role, "--for", "4h", "--reason", "BENCH-1 make bench", "-o", "json")
	if err != nil {
		return err
	}
	var req struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &req); err != nil || req.ID == "" {
		return fmt.Errorf("bench: request: no id in %q", out)
	}
	if _, err := s.cli("bob", "", "approve", req.ID); err != nil {
		return err
	}
	// readwrite needs two approvers in the dev config; a second approval
	// of an already granted request is refused, which is fine.
	_, _ = s.cli("carol", "", "approve", req.ID)
	return nil
}

// signInAdmin signs sam in and keeps the API token the CLI saved.
func (s *stack) signInAdmin() {
	if _, err := s.cli("sam", s.env["CUSTOS_DEMO_PASSWORD"]+"\n", "login", "--user", "sam", "--password-stdin"); err != nil {
		logf("bench: sam: %v (heap figures without a collection first)", err)
		return
	}
	b, err := os.ReadFile(filepath.Join(s.tmp, "cli", "sam", "token.json"))
	if err != nil {
		return
	}
	var t struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(b, &t) == nil {
		s.adminToken = t.Token
	}
}

func (s *stack) dbToken() (string, error) {
	out, err := s.cli("alice", "", "db", "token", "demo-pg")
	return strings.TrimSpace(out), err
}

// pgUser looks up the postgres OS user, which pgbouncer runs as.
func pgUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
