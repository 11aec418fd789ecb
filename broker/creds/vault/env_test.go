package vault

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a real Vault bootstrapped from deploy/vault against a real
// PostgreSQL target, with an issuer logged in through the custos-broker
// AppRole (so every test also exercises the least-privilege policy).
type env struct {
	vault  *devstack.Vault
	pg     *devstack.Postgres
	root   *vaultapi.Client
	store  broker.Store
	audit  *audit.Log
	logs   *syncBuffer
	log    *slog.Logger
	cfg    *config.Config
	client *Client
	issuer *Issuer
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	e := &env{vault: v, pg: pg, logs: &syncBuffer{}}
	e.log = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.root = rootClient(t, v.Addr, v.Token)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.audit = audit.NewLog(st)
	e.cfg = testConfig(pg)
	e.cfg.Vault = e.appRole(t, "custos-broker")
	e.client, e.issuer = e.start(t, e.cfg)
	return e
}

// start builds a client and issuer for cfg and runs both until the test ends.
func (e *env) start(t *testing.T, cfg *config.Config) (*Client, *Issuer) {
	t.Helper()
	c, err := New(cfg.Vault, e.log)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(Options{Client: c, Config: cfg, Store: e.store, Audit: e.audit, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.Run(ctx) }()
	go func() { defer wg.Done(); _ = iss.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return c, iss
}

func rootClient(t *testing.T, addr, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// appRole returns Vault settings that log in with the named AppRole role:
// the role id from a file: reference and a fresh secret id from an env:
// reference, as an operator would configure them.
func (e *env) appRole(t *testing.T, role string) config.Vault {
	t.Helper()
	s, err := e.root.Logical().Read("auth/approle/role/" + role + "/role-id")
	if err != nil || s == nil {
		t.Fatalf("read role id of %s: %v", role, err)
	}
	roleFile := filepath.Join(t.TempDir(), "role-id")
	if err := os.WriteFile(roleFile, []byte(s.Data["role_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec, err := e.root.Logical().Write("auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatalf("create secret id: %v", err)
	}
	envName := "CUSTOS_TEST_SECRET_ID_" + strings.ToUpper(strings.ReplaceAll(role, "-", "_"))
	t.Setenv(envName, sec.Data["secret_id"].(string))
	return config.Vault{Address: e.vault.Addr, RoleID: config.Secret("file:" + roleFile),
		SecretID: config.Secret("env:" + envName), Timeout: config.Duration(5 * time.Second)}
}

func testConfig(pg *devstack.Postgres) *config.Config {
	no := false
	cfg := &config.Config{Targets: []config.Target{
		{Name: "pg1", Kind: "postgres", Address: pg.Addr(), Roles: []config.Role{
			{Name: "readonly"},
			{Name: "rw", VaultRole: "readwrite", PerSession: true},
		}},
		{Name: "host1", Kind: "ssh", Address: "127.0.0.1:22", Roles: []config.Role{
			{Name: "ops", Login: devstack.DefaultSSHLogin},
			{Name: "batch", Login: devstack.DefaultSSHLogin, VaultRole: "ops", Shell: &no},
		}},
	}}
	cfg.ApplyDefaults()
	return cfg
}

// grant stores an active grant of user to role on target for d.
func (e *env) grant(t *testing.T, user, target, role string, d time.Duration) broker.Grant {
	t.Helper()
	now := time.Now().UTC()
	g := broker.Grant{ID: broker.NewID("gr"), RequestID: broker.NewID("req"), User: user, Target: target,
		Role: role, StartsAt: now.Add(-time.Second), EndsAt: now.Add(d), Approvers: []string{"bob"},
		State: broker.GrantActive}
	if err := e.store.Update(context.Background(), func(tx broker.Tx) error { return tx.PutGrant(g) }); err != nil {
		t.Fatal(err)
	}
	return g
}

// endGrant does what the access service does on revoke or expiry: store
// the new state and announce it.
func (e *env) endGrant(t *testing.T, g broker.Grant, state broker.GrantState, notify bool) broker.Grant {
	t.Helper()
	g.State = state
	if state == broker.GrantRevoked {
		g.RevokedAt, g.RevokedBy, g.RevokeReason = time.Now().UTC(), "sam", "test"
	}
	err := e.store.Update(context.Background(), func(tx broker.Tx) error {
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		if notify {
			tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: state, Reason: "test"})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// leaseAlive reports whether Vault still knows the lease.
func (e *env) leaseAlive(t *testing.T, leaseID string) (bool, time.Time) {
	t.Helper()
	s, err := e.root.Logical().Write("sys/leases/lookup", map[string]any{"lease_id": leaseID})
	if err != nil {
		return false, time.Time{}
	}
	exp, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(s.Data["expire_time"]))
	return true, exp
}

// waitLeaseGone polls until Vault no longer knows the lease and returns
// how long that took.
func (e *env) waitLeaseGone(t *testing.T, leaseID string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if ok, _ := e.leaseAlive(t, leaseID); !ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("lease %s still alive after %s", leaseID, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) targetDSN(user, pass string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable&connect_timeout=5",
		urlEscape(user), urlEscape(pass), e.pg.Addr())
}

func urlEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "@", "%40", ":", "%3A", "/", "%2F", "?", "%3F", "#", "%23", "&", "%26")
	return r.Replace(s)
}

func (e *env) admin(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// roleOID returns the OID of a database role. Backends are counted by OID:
// once a role is dropped, pg_stat_activity shows its surviving backends
// with a NULL usename.
func roleOID(t *testing.T, admin *pgx.Conn, user string) uint32 {
	t.Helper()
	var oid uint32
	if err := admin.QueryRow(context.Background(), "SELECT oid FROM pg_roles WHERE rolname = $1", user).Scan(&oid); err != nil {
		t.Fatalf("role %s: %v", user, err)
	}
	return oid
}

// backends counts server processes logged in as the role with that OID.
func backends(t *testing.T, admin *pgx.Conn, oid uint32) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE usesysid = $1", oid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// auditRecords returns the audit records whose action starts with prefix.
func (e *env) auditRecords(t *testing.T, prefix string) []broker.AuditRecord {
	t.Helper()
	var recs []broker.AuditRecord
	err := e.store.View(context.Background(), func(tx broker.Tx) error {
		var err error
		recs, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: prefix})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// assertNoSecret fails if secret appears in the captured logs or the
// audit log.
func (e *env) assertNoSecret(t *testing.T, secret string) {
	t.Helper()
	if secret == "" {
		t.Fatal("empty secret")
	}
	if !strings.Contains(e.logs.String(), `"msg":"`) {
		t.Fatal("no log output captured; the check would prove nothing")
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Errorf("the issued secret appears in the logs")
	}
	for _, r := range e.auditRecords(t, "") {
		if strings.Contains(string(r.Details), secret) || strings.Contains(r.Reason, secret) {
			t.Errorf("the issued secret appears in audit record %d (%s)", r.Seq, r.Action)
		}
	}
}
