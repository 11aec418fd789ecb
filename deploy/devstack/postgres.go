package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a running PostgreSQL 15 server on loopback. The superuser
// User logs in with Password over TCP (SCRAM); TLS is on, with a server
// certificate signed by the CA in CACertPath.
type Postgres struct {
	Host     string
	Port     int
	User     string
	Password string
	// BinDir holds the server's binaries (initdb, postgres, psql, pgbench).
	BinDir string
	// DataDir is the cluster's data directory.
	DataDir string
	// CACertPath is the PEM CA that signed the server certificate, for
	// sslmode=verify-full.
	CACertPath string

	// own is set for a server that belongs to one test
	// (StartOwnPostgres), which may stop and start it again.
	own *ownServer
}

// DSN is a URL for database db: postgres://user:pass@127.0.0.1:port/db?sslmode=disable.
func (p *Postgres) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(p.User, p.Password),
		Host:     fmt.Sprintf("%s:%d", p.Host, p.Port),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Addr is host:port.
func (p *Postgres) Addr() string { return fmt.Sprintf("%s:%d", p.Host, p.Port) }

var sharedPG struct {
	once sync.Once
	pg   *Postgres
	err  error
	miss string
}

// StartPostgres returns the test binary's PostgreSQL server, starting it on
// first use: initdb into a temporary directory (as user postgres when run as
// root), a random free port, SCRAM password auth on TCP and ssl=on.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	sharedPG.once.Do(func() {
		binDir, err := postgresBinDir()
		if err != nil {
			sharedPG.miss = fmt.Sprintf("PostgreSQL 15 server not found: %v; install with `apt-get install -y postgresql-15` or %s", err, InstallHint)
			return
		}
		dir, err := workDir("postgres")
		if err != nil {
			sharedPG.err = err
			return
		}
		tlsDir, err := workDir("tls")
		if err != nil {
			sharedPG.err = err
			return
		}
		tls, err := ensureDevTLS(tlsDir)
		if err != nil {
			sharedPG.err = err
			return
		}
		port, err := freePort()
		if err != nil {
			sharedPG.err = err
			return
		}
		sharedPG.pg, _, sharedPG.err = launchPostgres(pgOptions{
			binDir:   binDir,
			dir:      dir,
			port:     port,
			password: randomToken(16),
			tls:      tls,
			fast:     true,
		})
	})
	if sharedPG.miss != "" {
		unavailable(tb, sharedPG.miss)
	}
	if sharedPG.err != nil {
		tb.Fatalf("devstack: postgres: %v", sharedPG.err)
	}
	return sharedPG.pg
}

// CreateDatabase creates an empty database named after prefix, for a test's
// isolation, and returns its name.
func (p *Postgres) CreateDatabase(tb testing.TB, prefix string) string {
	tb.Helper()
	name := sanitizeIdent(prefix) + "_" + randomToken(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		tb.Fatalf("devstack: create database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("devstack: create database %s: %v", name, err)
	}
	return name
}

func sanitizeIdent(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	out := b.String()
	if out == "" || (out[0] >= '0' && out[0] <= '9') {
		out = "db_" + out
	}
	if len(out) > 40 {
		out = out[:40]
	}
	return out
}

// randomToken is n random bytes, hex encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// postgresBinDir finds a directory holding both initdb and postgres,
// preferring $CUSTOS_PG_BIN, then PostgreSQL 15's Debian location.
func postgresBinDir() (string, error) {
	var dirs []string
	if d := os.Getenv("CUSTOS_PG_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, "/usr/lib/postgresql/15/bin")
	if p, err := ToolPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no initdb and postgres in %s", strings.Join(dirs, ", "))
}

type pgOptions struct {
	binDir   string
	dir      string // holds data/, run/ and the server's TLS files
	port     int
	password string
	tls      tlsPaths
	// fast trades durability for speed (fsync off): tests only.
	fast     bool
	detached bool
	logPath  string
}

// pgSuperuser is the superuser initdb creates.
const pgSuperuser = "postgres"

// launchPostgres initialises dir/data if needed and starts the server.
func launchPostgres(o pgOptions) (*Postgres, *process, error) {
	cred, err := postgresCredential()
	if err != nil {
		return nil, nil, err
	}
	data := filepath.Join(o.dir, "data")
	run := filepath.Join(o.dir, "run")
	if o.logPath == "" {
		o.logPath = filepath.Join(o.dir, "postgres.log")
	}
	for _, d := range []string{o.dir, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, fmt.Errorf("postgres: %w", err)
		}
	}
	if err := chownTo(cred, o.dir, run); err != nil {
		return nil, nil, err
	}
	if !exists(filepath.Join(data, "PG_VERSION")) {
		pwfile := filepath.Join(o.dir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(o.password+"\n"), 0o600); err != nil {
			return nil, nil, fmt.Errorf("postgres: %w", err)
		}
		defer os.Remove(pwfile)
		if err := chownTo(cred, pwfile); err != nil {
			return nil, nil, err
		}
		args := []string{"-D", data, "-U", pgSuperuser, "--pwfile=" + pwfile,
			"--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-locale"}
		if o.fast {
			args = append(args, "--no-sync")
		}
		if out, err := runAs(cred, o.dir, filepath.Join(o.binDir, "initdb"), args...); err != nil {
			return nil, nil, fmt.Errorf("postgres: initdb: %w\n%s", err, out)
		}
	}
	// The server reads its certificate and key from the data directory,
	// owned by its user, key mode 0600.
	for _, f := range []struct{ src, dst string }{{o.tls.ServerCert, "server.crt"}, {o.tls.ServerKey, "server.key"}, {o.tls.CACert, "root.crt"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return nil, nil, fmt.Errorf("postgres: tls: %w", err)
		}
		dst := filepath.Join(data, f.dst)
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return nil, nil, fmt.Errorf("postgres: tls: %w", err)
		}
		if err := os.Chmod(dst, 0o600); err != nil {
			return nil, nil, fmt.Errorf("postgres: tls: %w", err)
		}
		if err := chownTo(cred, dst); err != nil {
			return nil, nil, err
		}
	}
	args := []string{"-D", data,
		"-c", "port=" + strconv.Itoa(o.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + run,
		"-c", "ssl=on",
		"-c", "ssl_cert_file=server.crt",
		"-c", "ssl_key_file=server.key",
		"-c", "max_connections=2100", // room for the idle-connection benchmark (cmd/custos-bench)
		"-c", "log_connections=on",
		"-c", "log_disconnections=on",
		"-c", "logging_collector=off",
	}
	if o.fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	p, err := startProcess(processSpec{
		Name:       "postgres",
		Path:       filepath.Join(o.binDir, "postgres"),
		Args:       args,
		Dir:        o.dir,
		LogPath:    o.logPath,
		RunAs:      cred,
		Detached:   o.detached,
		StopSignal: syscall.SIGINT, // fast shutdown: do not wait for clients
	})
	if err != nil {
		return nil, nil, err
	}
	pg := &Postgres{Host: "127.0.0.1", Port: o.port, User: pgSuperuser, Password: o.password,
		BinDir: o.binDir, DataDir: data, CACertPath: o.tls.CACert}
	err = waitFor(p, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		if !o.detached {
			p.stop(5 * time.Second)
			unregister(p)
		}
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	return pg, p, nil
}

// postgresCredential is the user PostgreSQL runs as: postgres when we are
// root (the server refuses to run as root), otherwise ourselves (nil).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("postgres: running as root needs a 'postgres' user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownTo gives paths to cred's user; a no-op when cred is nil.
func chownTo(cred *syscall.Credential, paths ...string) error {
	if cred == nil {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	return nil
}

// runAs runs a short command, as cred's user when set, and returns its output.
func runAs(cred *syscall.Credential, dir, path string, args ...string) ([]byte, error) {
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = baseEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd.CombinedOutput()
}
