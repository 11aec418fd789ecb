package pgproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// fakeAuth maps connection tokens to grants, as the identity layer does.
type fakeAuth struct {
	mu     sync.Mutex
	tokens map[string]fakeToken
	// naive skips the user and target checks, returning the token owner's
	// grant whoever presents it: the proxy must still refuse.
	naive bool
	// roles are the roles asked for, one per call.
	roles []string
	// Grants are the grants behind the tokens, as the store holds them.
	lifecycletest.Grants
}

type fakeToken struct {
	user, target string
	grant        broker.Grant
}

func (a *fakeAuth) AuthenticateDB(_ context.Context, user, token, target, role string) (broker.Grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roles = append(a.roles, role)
	t, ok := a.tokens[token]
	if !ok {
		return broker.Grant{}, fmt.Errorf("password authentication failed for user %q: unknown or expired connection token", user)
	}
	if !a.naive && (t.user != user || t.target != target) {
		return broker.Grant{}, fmt.Errorf("password authentication failed for user %q: connection token was issued for another user or target", user)
	}
	return t.grant, nil
}

// issue adds a token for a grant and returns it.
func (a *fakeAuth) issue(g broker.Grant) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens == nil {
		a.tokens = map[string]fakeToken{}
	}
	b := make([]byte, 16)
	rand.Read(b)
	tok := "cdb_" + hex.EncodeToString(b)
	a.tokens[tok] = fakeToken{user: g.User, target: g.Target, grant: g}
	a.Set(g)
	return tok
}

// fakeCreds hands out one real role of the devstack PostgreSQL.
type fakeCreds struct {
	user, password string
	mu             sync.Mutex
	calls          []string // session IDs
	ended          []string // session IDs given back with EndLogin
	err            error
}

func (c *fakeCreds) EndLogin(_ context.Context, _ broker.Grant, sessionID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = append(c.ended, sessionID)
	return nil
}

// waitEnded waits until every issued login has been given back exactly
// once.
func (c *fakeCreds) waitEnded(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		calls, ended := slices.Clone(c.calls), slices.Clone(c.ended)
		c.mu.Unlock()
		slices.Sort(calls)
		slices.Sort(ended)
		if len(calls) > 0 && slices.Equal(calls, ended) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logins issued for sessions %v, given back for %v", calls, ended)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *fakeCreds) PostgresLogin(_ context.Context, g broker.Grant, sessionID string) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return "", "", c.err
	}
	c.calls = append(c.calls, sessionID)
	return c.user, c.password, nil
}

func (c *fakeCreds) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// stack is a proxy in front of the devstack PostgreSQL with fakes for
// identity, credentials, recording and audit.
type stack struct {
	pg       *devstack.Postgres
	db       string
	cfg      *config.Config
	auth     *fakeAuth
	creds    *fakeCreds
	rec      *lifecycletest.Recorder
	audit    *lifecycletest.Audit
	proxy    *Proxy
	port     int
	psql     string
	pgbench  string
	role     string
	password string
}

const testTarget = "orders"

// stackOption adjusts the target or the proxy options before start.
type stackOption func(*config.Target, *Options)

// newStack starts a proxy for target "orders" (a fresh database owned by a
// fresh role) plus target "orders/extra" when allowed.
func newStack(t testing.TB, opts ...stackOption) *stack {
	t.Helper()
	pg := devstack.StartPostgres(t)
	s := &stack{pg: pg}
	s.psql = tool(t, "psql", "apt-get install -y postgresql-client-15")
	s.pgbench = tool(t, "pgbench", "apt-get install -y postgresql-client-15")
	s.db = pg.CreateDatabase(t, "pgproxy")
	s.role, s.password = "pgp_"+randHex(4), randHex(12)
	super(t, pg, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", s.role, s.password))
	super(t, pg, "postgres", fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", s.db, s.role))
	t.Cleanup(func() {
		super(t, pg, "postgres", fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s'", s.role))
	})

	target := config.Target{Name: testTarget, Kind: "postgres", Address: pg.Addr(),
		Roles:    []config.Role{{Name: "rw"}},
		Postgres: config.TargetPostgres{Database: s.db, TLS: "prefer", Parameters: "record"}}
	s.cfg = &config.Config{}
	s.auth = &fakeAuth{}
	s.creds = &fakeCreds{user: s.role, password: s.password}
	s.rec = &lifecycletest.Recorder{}
	s.audit = &lifecycletest.Audit{}
	o := Options{
		Targets: s.cfg, Auth: s.auth, Grants: s.auth, Credentials: s.creds, TLS: selfSignedTLS(t),
		Options: lifecycle.Options{Recorder: s.rec, Audit: s.audit, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))},
	}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, opt := range opts {
		opt(&target, &o)
	}
	s.cfg.Targets = []config.Target{target}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.proxy = p
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, l) }()
	t.Cleanup(func() {
		p.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// waitNoSessions waits until the proxy has no live session.
func (s *stack) waitNoSessions(t testing.TB) { lifecycletest.WaitNoSessions(t, s.proxy.Core) }

// grant returns an active grant of user on the target.
func (s *stack) grant(user string) broker.Grant {
	now := time.Now()
	return broker.Grant{ID: broker.NewID("grt"), RequestID: broker.NewID("req"), User: user, Target: testTarget,
		Role: "rw", StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour), Approvers: []string{"bob"},
		Reason: "INC-1 test", State: broker.GrantActive}
}

// token issues a connection token for an active grant of user.
func (s *stack) token(user string) (string, broker.Grant) {
	g := s.grant(user)
	return s.auth.issue(g), g
}

// conninfo is a libpq connection string to the proxy.
func (s *stack) conninfo(user, dbname, sslmode string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=%s sslmode=%s connect_timeout=10", s.port, dbname, user, sslmode)
}

// connect opens a pgx connection through the proxy.
func (s *stack) connect(t testing.TB, user, token string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.conninfo(user, testTarget, "require")+" password="+token)
	if err != nil {
		t.Fatalf("connect through proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// runPsql runs psql against the proxy with a script on stdin and returns
// its combined output.
func (s *stack) runPsql(t testing.TB, user, token, dbname, sslmode, script string, args ...string) (string, error) {
	t.Helper()
	return s.runPsqlConn(t, s.conninfo(user, dbname, sslmode), token, script, args...)
}

// runPsqlConn runs psql with a connection string.
func (s *stack) runPsqlConn(t testing.TB, conninfo, token, script string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", conninfo}, args...)
	cmd := exec.CommandContext(ctx, s.psql, all...)
	cmd.Env = append(cleanPGEnv(), "PGPASSWORD="+token)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tool finds an executable or skips (fails under CI).
func tool(t testing.TB, name, hint string) string {
	t.Helper()
	devstack.Require(t, name, hint)
	p, err := devstack.ToolPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cleanPGEnv is the environment without PG* variables.
func cleanPGEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// super runs SQL as the devstack superuser.
func super(t testing.TB, pg *devstack.Postgres, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN(db))
	if err != nil {
		t.Fatalf("superuser connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("superuser %q: %v", sql, err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// selfSignedTLS is a throwaway broker certificate for 127.0.0.1.
func selfSignedTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "custos test broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// kinds filters events by kind; dump renders them for failure messages.
var kinds, dump = lifecycletest.Kinds, lifecycletest.Dump
