package devstack

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// UpOptions configures Up, the long-running local stack behind `make up`.
type UpOptions struct {
	// Dir holds all state (.dev in the repository).
	Dir string
	// ConfigTemplate is the broker config with ${VAR} placeholders
	// (deploy/dev/custos.yaml), rendered into Dir/custos.yaml.
	ConfigTemplate string
	// Custos is the broker binary. Empty: start everything else.
	Custos string
	// Replicas is how many brokers to start: 1 (the default) on the
	// SQLite store, or 2, sharing a PostgreSQL store on the stack's
	// PostgreSQL and the bucket (see replicas.go).
	Replicas int
	// Out receives progress lines.
	Out io.Writer
}

// demoUsers get an SSH key pair each under Dir/keys.
var demoUsers = []string{"alice", "bob", "carol", "sam"}

// Bucket is the recordings bucket Up creates, with Object Lock.
const Bucket = "custos-recordings"

// infra are the components Up starts, in order; custos comes last.
var infra = []string{"postgres", "minio", "vault", "sshd", "oidc"}

// Up starts (or keeps, when already running) PostgreSQL, MinIO, Vault and
// sshd as detached processes with state in o.Dir, bootstraps Vault, writes
// Dir/env and Dir/custos.yaml and (re)starts the broker. Each process's pid
// is in Dir/pids/NAME.pid and its log in Dir/logs/NAME.log.
func Up(o UpOptions) (map[string]string, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	for _, d := range []string{"pids", "logs", "keys", "tls", "data", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("up: %w", err)
		}
	}
	// Components running as postgres need to traverse to their directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	if err := ensureTOTPSecrets(dir); err != nil {
		return nil, err
	}
	envPath := filepath.Join(dir, "env")
	env, err := readEnvFile(envPath)
	if err != nil {
		return nil, err
	}
	running := true
	for _, name := range infra {
		if !pidAlive(dir, name) {
			running = false
		}
	}
	if running && env["VAULT_TOKEN"] != "" {
		fmt.Fprintln(o.Out, "up: postgres, minio, vault, sshd and the openid provider already running")
		// A stack started before the masking demo: add its key and data.
		if env["CUSTOS_MASKING_KEY"] == "" {
			env["CUSTOS_MASKING_KEY"] = randomToken(16)
		}
		port, _ := strconv.Atoi(env["CUSTOS_TARGET_PG_PORT"])
		if err := loadDemoData(&Postgres{Host: "127.0.0.1", Port: port, User: pgSuperuser, Password: env["CUSTOS_TARGET_PG_PASSWORD"]}); err != nil {
			return nil, fmt.Errorf("up: postgres demo data: %w", err)
		}
	} else {
		for _, name := range append([]string{"custos", replicaB}, infra...) {
			stopPid(dir, name)
		}
		if err := startInfra(o, env); err != nil {
			return nil, err
		}
	}
	if env["CUSTOS_PUBLIC_URL"] == "" { // a stack started before replicas shared it
		env["CUSTOS_PUBLIC_URL"] = env["CUSTOS_URL"]
	}
	if err := writeEnvFile(envPath, env); err != nil {
		return nil, err
	}
	slackEnv(env)
	if err := storeEnv(o, env); err != nil {
		return nil, err
	}
	if o.ConfigTemplate != "" {
		if err := renderConfig(o.ConfigTemplate, env["CUSTOS_CONFIG"], env); err != nil {
			return nil, err
		}
	}
	if o.Custos == "" {
		fmt.Fprintln(o.Out, "up: no broker binary given; the broker is not started")
		return env, nil
	}
	if err := startCustos(o, env, "custos", !running); err != nil {
		return env, err
	}
	if err := startReplicaB(o, env, !running); err != nil {
		return env, err
	}
	return env, nil
}

// settle fills in generated secrets and ports that .dev/env lacks.
func settle(env map[string]string, dir string) error {
	secrets := map[string]func() string{
		"CUSTOS_DEMO_PASSWORD":      func() string { return "demo-" + randomToken(8) },
		"CUSTOS_TARGET_PG_PASSWORD": func() string { return randomToken(16) },
		"CUSTOS_S3_ACCESS_KEY":      func() string { return "custos" + randomToken(4) },
		"CUSTOS_S3_SECRET_KEY":      func() string { return randomToken(16) },
		"VAULT_TOKEN":               func() string { return "root-" + randomToken(12) },
		"CUSTOS_MASKING_KEY":        func() string { return randomToken(16) },
	}
	for k, gen := range secrets {
		if env[k] == "" {
			env[k] = gen()
		}
	}
	// Keep the ports of the first `up` while they are free; otherwise pick
	// new ones (the broker config is rendered from env each time).
	used := map[int]bool{}
	for _, k := range []string{"CUSTOS_HTTP_PORT", "CUSTOS_SSH_PORT", "CUSTOS_PG_PORT",
		"CUSTOS_TARGET_PG_PORT", "CUSTOS_TARGET_SSH_PORT", "CUSTOS_VAULT_PORT", "CUSTOS_MINIO_PORT"} {
		port, _ := strconv.Atoi(env[k])
		if port == 0 || used[port] || !portFree(port) {
			var err error
			for {
				if port, err = freePort(); err != nil {
					return err
				}
				if !used[port] {
					break
				}
			}
		}
		used[port] = true
		env[k] = strconv.Itoa(port)
	}
	env["CUSTOS_DEV_DIR"] = dir
	env["CUSTOS_CONFIG"] = filepath.Join(dir, "custos.yaml")
	env["CUSTOS_CA_CERT"] = filepath.Join(dir, "tls", "ca.crt")
	env["CUSTOS_URL"] = "https://127.0.0.1:" + env["CUSTOS_HTTP_PORT"]
	env["CUSTOS_PUBLIC_URL"] = env["CUSTOS_URL"]
	env["CUSTOS_TARGET_SSH_LOGIN"] = DefaultSSHLogin
	env["CUSTOS_TARGET_PG_USER"] = pgSuperuser
	env["VAULT_ADDR"] = "http://127.0.0.1:" + env["CUSTOS_VAULT_PORT"]
	env["CUSTOS_S3_ENDPOINT"] = "http://127.0.0.1:" + env["CUSTOS_MINIO_PORT"]
	env["CUSTOS_S3_BUCKET"] = Bucket
	return settleOIDC(env)
}

func startInfra(o UpOptions, env map[string]string) error {
	dir := o.Dir
	if err := settle(env, dir); err != nil {
		return err
	}
	// Saved before anything starts, so a failed up keeps its secrets and
	// the next one reuses them (the PostgreSQL password is set at initdb).
	if err := writeEnvFile(filepath.Join(dir, "env"), env); err != nil {
		return err
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, "up: "+format+"\n", args...) }
	tlsFiles, err := ensureDevTLS(filepath.Join(dir, "tls"))
	if err != nil {
		return err
	}
	for _, u := range demoUsers {
		if _, err := ensureSSHKey(filepath.Join(dir, "keys", u), u+"@custos-dev"); err != nil {
			return err
		}
	}
	logPath := func(name string) string { return filepath.Join(dir, "logs", name+".log") }

	binDir, err := postgresBinDir()
	if err != nil {
		return fmt.Errorf("up: postgres: %w (apt-get install -y postgresql-15)", err)
	}
	pgDir := filepath.Join(dir, "pg")
	// The superuser password is set at initdb: a data dir from an older
	// env file would not accept the current one.
	if exists(filepath.Join(pgDir, "data")) && readFileString(filepath.Join(pgDir, "password")) != env["CUSTOS_TARGET_PG_PASSWORD"] {
		say("postgres data dir predates .dev/env; recreating it")
		if err := os.RemoveAll(pgDir); err != nil {
			return err
		}
	}
	port, _ := strconv.Atoi(env["CUSTOS_TARGET_PG_PORT"])
	pg, p, err := launchPostgres(pgOptions{binDir: binDir, dir: pgDir, port: port,
		password: env["CUSTOS_TARGET_PG_PASSWORD"], tls: tlsFiles, detached: true, logPath: logPath("postgres"),
		maxConn: 2100}) // room for make bench's idle connections (cmd/custos-bench)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(pgDir, "password"), []byte(pg.Password), 0o600); err != nil {
		return err
	}
	if err := writePid(dir, "postgres", p.pid); err != nil {
		return err
	}
	say("postgres 15 on 127.0.0.1:%d (data %s)", pg.Port, pg.DataDir)
	if err := loadDemoData(pg); err != nil {
		return fmt.Errorf("up: postgres demo data: %w", err)
	}

	minioBin, err := ToolPath("minio")
	if err != nil {
		return fmt.Errorf("up: minio: %w; %s", err, InstallHint)
	}
	port, _ = strconv.Atoi(env["CUSTOS_MINIO_PORT"])
	m, p, err := launchMinIO(minioOptions{bin: minioBin, dir: filepath.Join(dir, "minio"), port: port,
		accessKey: env["CUSTOS_S3_ACCESS_KEY"], secretKey: env["CUSTOS_S3_SECRET_KEY"], detached: true, logPath: logPath("minio")})
	if err != nil {
		return err
	}
	if err := writePid(dir, "minio", p.pid); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = m.makeLockedBucket(ctx, Bucket)
	cancel()
	if err != nil {
		return err
	}
	say("minio on %s, bucket %s with Object Lock", m.Endpoint, Bucket)

	vaultBin, err := ToolPath("vault")
	if err != nil {
		return fmt.Errorf("up: vault: %w; %s", err, InstallHint)
	}
	// Run Vault through a link inside .dev so `pgrep -f .dev` finds it.
	link := filepath.Join(dir, "bin", "vault")
	_ = os.Remove(link)
	if err := os.Symlink(vaultBin, link); err != nil {
		return fmt.Errorf("up: vault: %w", err)
	}
	vaultDir := filepath.Join(dir, "vault")
	if err := os.MkdirAll(vaultDir, 0o755); err != nil {
		return err
	}
	port, _ = strconv.Atoi(env["CUSTOS_VAULT_PORT"])
	v, p, err := launchVault(vaultOptions{bin: link, dir: vaultDir, port: port, token: env["VAULT_TOKEN"], detached: true, logPath: logPath("vault")})
	if err != nil {
		return err
	}
	if err := writePid(dir, "vault", p.pid); err != nil {
		return err
	}
	outDir := filepath.Join(vaultDir, "out")
	if out, err := runBootstrap(v, pg, DefaultSSHLogin, outDir); err != nil {
		return fmt.Errorf("up: vault bootstrap: %w\n%s", err, out)
	}
	if err := v.readBootstrapOutput(outDir); err != nil {
		return fmt.Errorf("up: vault bootstrap: %w", err)
	}
	say("vault dev server on %s, bootstrapped from deploy/vault", v.Addr)

	sshdBin, err := ToolPath("sshd")
	if err != nil {
		return fmt.Errorf("up: sshd: %w (apt-get install -y openssh-server)", err)
	}
	port, _ = strconv.Atoi(env["CUSTOS_TARGET_SSH_PORT"])
	s, p, err := launchSSHD(sshdOptions{sshd: sshdBin, dir: filepath.Join(dir, "sshd"), port: port,
		caPublicKey: v.SSHCAPublicKey, login: DefaultSSHLogin, detached: true, logPath: logPath("sshd")})
	if err != nil {
		return err
	}
	if err := writePid(dir, "sshd", p.pid); err != nil {
		return err
	}
	say("sshd on %s, login %s, trusting Vault's SSH CA", s.Addr(), s.Login)
	return startDemoOIDC(dir, env, say)
}

// startCustos (re)starts the broker unless it runs already with the same
// binary and config and the components under it were not restarted.
func startCustos(o UpOptions, env map[string]string, name string, infraRestarted bool) error {
	dir := o.Dir
	pidFile := filepath.Join(dir, "pids", name+".pid")
	if !infraRestarted && pidAlive(dir, name) && !newerThan(o.Custos, pidFile) && !newerThan(env["CUSTOS_CONFIG"], pidFile) {
		fmt.Fprintf(o.Out, "up: %s already running\n", name)
		return nil
	}
	if pidAlive(dir, name) {
		fmt.Fprintf(o.Out, "up: restarting %s (new binary, new config or restarted components)\n", name)
	}
	stopPid(dir, name)
	brokerToken, err := os.ReadFile(filepath.Join(dir, "vault", "out", "broker-token"))
	if err != nil {
		return fmt.Errorf("up: custos: broker token: %w", err)
	}
	var procEnv []string
	for k, v := range env {
		if k == "VAULT_TOKEN" {
			// The broker runs with the least-privilege custos-broker policy.
			v = strings.TrimSpace(string(brokerToken))
		}
		procEnv = append(procEnv, k+"="+v)
	}
	sort.Strings(procEnv)
	procEnv = append(procEnv, "HOME="+env["CUSTOS_DATA_DIR"])
	check := exec.Command(o.Custos, "config", "check", env["CUSTOS_CONFIG"])
	check.Env = append(baseEnv(), procEnv...)
	if out, err := check.CombinedOutput(); err != nil {
		return fmt.Errorf("up: custos config check %s: %w\n%s", env["CUSTOS_CONFIG"], err, out)
	}
	logPath := filepath.Join(dir, "logs", name+".log")
	p, err := startProcess(processSpec{
		Name:     name,
		Path:     o.Custos,
		Args:     []string{"serve", "--config", env["CUSTOS_CONFIG"]},
		Env:      procEnv,
		Dir:      dir,
		LogPath:  logPath,
		Detached: true,
	})
	if err != nil {
		return err
	}
	if err := writePid(dir, name, p.pid); err != nil {
		return err
	}
	client, err := caClient(env["CUSTOS_CA_CERT"])
	if err != nil {
		return err
	}
	err = waitFor(p, 30*time.Second, func() error {
		resp, err := client.Get(env["CUSTOS_URL"] + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New("healthz: " + resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("up: %s: %w", name, err)
	}
	fmt.Fprintf(o.Out, "up: %s broker on %s (log %s)\n", name, env["CUSTOS_URL"], logPath)
	return nil
}

// caClient trusts the dev CA.
func caClient(caPath string) (*http.Client, error) {
	pem, err := os.ReadFile(caPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caPath)
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// slackEnv turns Slack approvals on in the rendered config when the caller's
// environment has CUSTOS_SLACK_BOT_TOKEN and CUSTOS_SLACK_SIGNING_SECRET, and
// passes CUSTOS_SLACK_API_URL through. The two secrets reach the broker's
// environment only: they are not in envKeys, so .dev/env never holds them.
func slackEnv(env map[string]string) {
	enabled := os.Getenv("CUSTOS_SLACK_BOT_TOKEN") != "" && os.Getenv("CUSTOS_SLACK_SIGNING_SECRET") != ""
	env["CUSTOS_SLACK_ENABLED"] = strconv.FormatBool(enabled)
	env["CUSTOS_SLACK_API_URL"] = os.Getenv("CUSTOS_SLACK_API_URL")
	for _, k := range []string{"CUSTOS_SLACK_BOT_TOKEN", "CUSTOS_SLACK_SIGNING_SECRET"} {
		if enabled {
			env[k] = os.Getenv(k)
		} else {
			delete(env, k)
		}
	}
}

// renderConfig replaces ${VAR} in the template with env values, except on
// comment lines; an unknown variable is an error rather than an empty string.
func renderConfig(template, out string, env map[string]string) error {
	b, err := os.ReadFile(template)
	if err != nil {
		return fmt.Errorf("up: config: %w", err)
	}
	var missing []string
	lines := strings.SplitAfter(string(b), "\n")
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue // comments may mention ${VAR} literally
		}
		lines[i] = os.Expand(line, func(k string) string {
			v, ok := env[k]
			if !ok {
				missing = append(missing, k)
			}
			return v
		})
	}
	rendered := strings.Join(lines, "")
	if len(missing) > 0 {
		return fmt.Errorf("up: config %s uses variables the stack does not set: %s", template, strings.Join(missing, ", "))
	}
	if old, err := os.ReadFile(out); err == nil && string(old) == rendered {
		return nil // keep the mtime: an unchanged config needs no restart
	}
	return writeFileAtomic(out, []byte(rendered), 0o644)
}

// envKeys lists .dev/env's variables in the order written.
var envKeys = []string{
	"CUSTOS_DEV_DIR", "CUSTOS_URL", "CUSTOS_PUBLIC_URL", "CUSTOS_CA_CERT", "CUSTOS_CONFIG", "CUSTOS_HTTP_PORT",
	"CUSTOS_SSH_PORT", "CUSTOS_PG_PORT", "CUSTOS_DEMO_PASSWORD",
	"CUSTOS_TARGET_SSH_PORT", "CUSTOS_TARGET_SSH_LOGIN",
	"CUSTOS_TARGET_PG_PORT", "CUSTOS_TARGET_PG_USER", "CUSTOS_TARGET_PG_PASSWORD",
	"VAULT_ADDR", "VAULT_TOKEN", "CUSTOS_VAULT_PORT",
	"CUSTOS_S3_ENDPOINT", "CUSTOS_S3_ACCESS_KEY", "CUSTOS_S3_SECRET_KEY", "CUSTOS_S3_BUCKET", "CUSTOS_MINIO_PORT",
	// The second broker with REPLICAS=2 (replicas.go).
	"CUSTOS_URL_B", "CUSTOS_HTTP_PORT_B", "CUSTOS_SSH_PORT_B", "CUSTOS_PG_PORT_B",
	"CUSTOS_OIDC_ISSUER", "CUSTOS_OIDC_PORT", "CUSTOS_OIDC_SECRET",
}

func writeEnvFile(path string, env map[string]string) error {
	var b strings.Builder
	b.WriteString("# Written by `make up` (deploy/devstack). Use: source .dev/env\n")
	for _, k := range envKeys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, env[k])
	}
	return writeFileAtomic(path, []byte(b.String()), 0o600)
}

// readEnvFile parses the export lines writeEnvFile writes.
func readEnvFile(path string) (map[string]string, error) {
	env := map[string]string{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return env, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		env[k] = strings.Trim(v, `'"`)
	}
	return env, sc.Err()
}

func writePid(dir, name string, pid int) error {
	return writeFileAtomic(filepath.Join(dir, "pids", name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// pidAlive reports whether pids/NAME.pid names a live process started from
// dir (its command line mentions dir, guarding against reused pids).
func pidAlive(dir, name string) bool {
	pid, _ := strconv.Atoi(readFileString(filepath.Join(dir, "pids", name+".pid")))
	if !alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err == nil && strings.Contains(string(cmdline), dir)
}

// stopPid stops the process in pids/NAME.pid, if it is ours and alive, and
// removes the pid file.
func stopPid(dir, name string) {
	pidFile := filepath.Join(dir, "pids", name+".pid")
	if pidAlive(dir, name) {
		pid, _ := strconv.Atoi(readFileString(pidFile))
		sig := syscall.SIGTERM
		if name == "postgres" {
			sig = syscall.SIGINT
		}
		descendants := descendantsOf(pid)
		_ = syscall.Kill(pid, sig)
		// The broker drains recordings for up to ten seconds.
		for i := 0; i < 200 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		killAll(descendants)
	}
	_ = os.Remove(pidFile)
}

func readFileString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// newerThan reports whether path was modified after ref.
func newerThan(path, ref string) bool {
	a, err := os.Stat(path)
	if err != nil {
		return false
	}
	b, err := os.Stat(ref)
	if err != nil {
		return true
	}
	return a.ModTime().After(b.ModTime())
}
