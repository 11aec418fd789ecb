package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/deploy/devstack"
)

// replicaConfig is a broker on a shared PostgreSQL store, with the one
// public URL of every replica (tokens are bound to it); %[1]s is the
// listen section, %[2]s the data dir, %[3]s the store DSN, %[4]s the vault
// section and %[5]s the target's address.
const replicaConfig = `
public_url: "https://custos-replicas.test"
listen: %[1]s
store: {driver: postgres, dsn: %[3]q}
recording: {dir: %[2]s/recordings, encryption: local}
%[4]s
users:
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}
  - {name: bob, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob]}
targets:
  - name: demo-pg
    kind: postgres
    address: "%[5]s"
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
`

// TestMissedRevocationEndsSessionOtherReplica: two brokers share a
// PostgreSQL store. Broker A proxies a running psql session when its
// LISTEN connection to the store is cut and cannot come back (the store
// database refuses new connections); broker B revokes the grant, so A
// never hears of it. A's session sweep (listen.session_sweep: 2s) still
// ends the session with the revocation's reason within the sweep
// interval and a margin.
func TestMissedRevocationEndsSessionOtherReplica(t *testing.T) {
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	if _, err := exec.LookPath("psql"); err != nil {
		devstack.Require(t, "psql", "apt-get install postgresql-client")
	}
	storeDB := pg.CreateDatabase(t, "replicas")
	dsn := pg.DSN(storeDB)

	start := replicaStarter(t, pg, dsn, nil)
	pgPort := devstack.FreePort(t)
	a := start("a", fmt.Sprintf(`{http: "127.0.0.1:%%d", postgres: "127.0.0.1:%d", tls_cert: %%[2]s/tls.crt, tls_key: %%[2]s/tls.key, data_dir: %%[2]s/data, session_sweep: 2s}`, pgPort),
		fmt.Sprintf("vault: {address: %q, token: env:CUSTOS_E2E_VAULT_TOKEN}", v.Addr), "CUSTOS_E2E_VAULT_TOKEN="+v.BrokerToken)
	b := start("b", `{http: "127.0.0.1:%d", tls_cert: %[2]s/tls.crt, tls_key: %[2]s/tls.key, data_dir: %[2]s/data}`, "")
	a.login("alice", "bob")
	b.login("alice")

	req := decode[jsonRequest](t, a.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-42", "-o", "json"))
	g := decode[decided](t, a.ok("bob", "approve", req.ID, "-o", "json")).Grant
	token := strings.TrimSpace(a.ok("alice", "db", "token", "demo-pg"))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := runLongPsql(ctx, t, pgPort, token)
	su := waitStatement(ctx, t, pg, "select pg_sleep(40)", a)
	// Broker A goes deaf: no new connection to the store database, and
	// every listening connection cut. Existing pooled connections stay.
	if _, err := su.Exec(ctx, fmt.Sprintf("ALTER DATABASE %q ALLOW_CONNECTIONS false", storeDB)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = su.Exec(context.Background(), fmt.Sprintf("ALTER DATABASE %q ALLOW_CONNECTIONS true", storeDB))
	})
	var cut int
	if err := su.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
		storeDB).Scan(&cut); err != nil || cut < 2 {
		t.Fatalf("listening connections cut: %d, %v", cut, err)
	}

	revokedAt := time.Now()
	b.ok("alice", "revoke", g.ID, "--reason", "INC-42 closed on replica b")
	select {
	case out := <-done:
		took := time.Since(revokedAt)
		if !strings.Contains(out, "access revoked: INC-42 closed on replica b") {
			t.Fatalf("psql after the revocation on the other replica: %q\nbroker a log:\n%s", out, a.logs)
		}
		if took > 2*time.Second+2*time.Second {
			t.Errorf("session ended %v after the revocation, want within the 2s sweep and a margin", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("psql still running 20s after the grant was revoked on another replica\nbroker a log:\n%s", a.logs)
	}
	if !strings.Contains(a.logs.String(), "grant found ended on re-check") {
		t.Errorf("broker a did not log the sweep's finding:\n%s", a.logs)
	}
}

// replicaStarter returns how to start brokers sharing the store dsn and
// the target pg; edit, when set, changes a broker's config text.
func replicaStarter(t *testing.T, pg *devstack.Postgres, dsn string, edit func(name, body string) string) func(name, listen, vault string, env ...string) *brokerProc {
	return func(name, listen, vault string, env ...string) *brokerProc {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		writeTLS(t, dir)
		port := devstack.FreePort(t)
		listen = fmt.Sprintf(listen, port, dir)
		b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), homes: map[string]string{}, env: env}
		b.url = fmt.Sprintf("https://127.0.0.1:%d", port)
		body := fmt.Sprintf(replicaConfig, listen, filepath.Join(dir, "data"), dsn, vault, pg.Addr())
		if edit != nil {
			body = edit(name, body)
		}
		if err := os.WriteFile(b.cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		b.env = append(b.env, "CUSTOS_CA_CERT="+filepath.Join(dir, "tls.crt"))
		b.start()
		t.Cleanup(func() { b.stop(syscall.SIGTERM) })
		return b
	}
}

// runLongPsql runs "select pg_sleep(40)" as alice through the PostgreSQL
// proxy on port; its output arrives on the channel when psql ends.
func runLongPsql(ctx context.Context, t *testing.T, port int, token string) <-chan string {
	done := make(chan string, 1)
	go func() {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", port),
			"-c", "select pg_sleep(40)")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
		out, _ := cmd.CombinedOutput()
		done <- string(out)
	}()
	return done
}

// waitStatement waits until the target runs query and returns a superuser
// connection to it.
func waitStatement(ctx context.Context, t *testing.T, pg *devstack.Postgres, query string, b *brokerProc) *pgx.Conn {
	t.Helper()
	su, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { su.Close(context.Background()) })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var n int
		if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1", query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return su
		}
		if time.Now().After(deadline) {
			t.Fatalf("the psql session never ran\nbroker log:\n%s", b.logs)
		}
	}
}

// TestDisabledUserSessionEndsOtherReplica: a user disabled in the config
// of a broker that starts while another replica proxies their psql
// session loses that session within a second (their grants are revoked
// at start and the revocation reaches the other replica), and their API
// token stops working there too.
func TestDisabledUserSessionEndsOtherReplica(t *testing.T) {
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	if _, err := exec.LookPath("psql"); err != nil {
		devstack.Require(t, "psql", "apt-get install postgresql-client")
	}
	dsn := pg.DSN(pg.CreateDatabase(t, "replicas"))
	start := replicaStarter(t, pg, dsn, func(name, body string) string {
		if name != "c" {
			return body
		}
		return strings.Replace(body, "{name: alice, password: env:CUSTOS_E2E_PASSWORD}",
			"{name: alice, password: env:CUSTOS_E2E_PASSWORD, disabled: true}", 1)
	})
	pgPort := devstack.FreePort(t)
	a := start("a", fmt.Sprintf(`{http: "127.0.0.1:%%d", postgres: "127.0.0.1:%d", tls_cert: %%[2]s/tls.crt, tls_key: %%[2]s/tls.key, data_dir: %%[2]s/data}`, pgPort),
		fmt.Sprintf("vault: {address: %q, token: env:CUSTOS_E2E_VAULT_TOKEN}", v.Addr), "CUSTOS_E2E_VAULT_TOKEN="+v.BrokerToken)
	a.login("alice", "bob")
	req := decode[jsonRequest](t, a.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-43", "-o", "json"))
	a.ok("bob", "approve", req.ID)
	token := strings.TrimSpace(a.ok("alice", "db", "token", "demo-pg"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := runLongPsql(ctx, t, pgPort, token)
	waitStatement(ctx, t, pg, "select pg_sleep(40)", a)

	// Replica c starts with alice disabled.
	disabledAt := time.Now()
	start("c", `{http: "127.0.0.1:%d", tls_cert: %[2]s/tls.crt, tls_key: %[2]s/tls.key, data_dir: %[2]s/data}`, "")
	select {
	case out := <-done:
		if !strings.Contains(out, "access revoked") {
			t.Fatalf("psql after alice was disabled: %q\nbroker a log:\n%s", out, a.logs)
		}
		t.Logf("session ended %v after replica c was started", time.Since(disabledAt))
	case <-time.After(20 * time.Second):
		t.Fatalf("psql still running 20s after alice was disabled\nbroker a log:\n%s", a.logs)
	}
	a.refused("alice", "token_invalid", "whoami")
	if _, err := exec.CommandContext(ctx, "psql", "-X", "-At", fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require password=%s", pgPort, token), "-c", "select 1").CombinedOutput(); err == nil {
		t.Fatal("a disabled user's connection token still connects")
	}
}
