package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dbProxyTTL is the connection token lifetime of the tunnel test's broker:
// short, so a connection a few seconds later needs a refreshed token.
const dbProxyTTL = "3s"

// TestDBProxyTunnel runs `custos db proxy` against the real broker: psql and
// a pgx pool with several concurrent connections log in through the local
// port without a password, a query is cancelled through it, a connection
// after the first token expired still works, the broker recorded every
// session as the user, and revoking the grant ends a live session through
// the tunnel.
func TestDBProxyTunnel(t *testing.T) {
	st := startFullStack(t, stackOptions{extra: "auth: {db_token_ttl: " + dbProxyTTL + "}\n"})
	b := st.b

	// No grant: the tunnel refuses to start.
	if _, errs, code := b.run("alice", "", "db", "proxy", "demo-pg"); code == 0 || !strings.Contains(errs, "no active grant") {
		t.Fatalf("db proxy without a grant: exit %d: %s", code, errs)
	}
	// Only loopback: local clients give no password.
	if _, errs, code := b.run("alice", "", "db", "proxy", "demo-pg", "--listen", "0.0.0.0"); code == 0 || !strings.Contains(errs, "loopback") {
		t.Fatalf("db proxy on 0.0.0.0: exit %d: %s", code, errs)
	}

	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "INC-20", "-o", "json"))
	grant := decode[decided](t, b.ok("bob", "approve", req.ID, "-o", "json")).Grant
	port, tunnelOut := startTunnel(t, b, "alice", "demo-pg", "--role", "readonly")

	psql := func(sql string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-w",
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=whoever sslmode=prefer", port), "-c", sql)
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "PGPASSWORD=")
		o, err := cmd.CombinedOutput()
		return string(o), err
	}
	got, err := psql("select session_user || ' ' || (6*7)")
	if err != nil || !strings.HasSuffix(strings.TrimSpace(got), " 42") || !strings.Contains(got, "readonly") {
		t.Fatalf("psql through the tunnel: %v: %q\ntunnel:\n%s\nbroker log:\n%s", err, got, tunnelOut, b.logs)
	}

	// A pool holding four connections at once, each querying.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pcfg, err := pgxpool.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=whoever sslmode=disable pool_max_conns=4", port))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const n = 4
	var held sync.WaitGroup
	held.Add(n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			c, err := pool.Acquire(ctx)
			held.Done()
			if err != nil {
				errs <- err
				return
			}
			defer c.Release()
			held.Wait() // every connection is open at once
			var sum int
			if err := c.QueryRow(ctx, "select $1::int + 100", i).Scan(&sum); err != nil || sum != i+100 {
				errs <- fmt.Errorf("pool query %d: %v (%d)", i, err, sum)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("%v\ntunnel:\n%s\nbroker log:\n%s", err, tunnelOut, b.logs)
		}
	}
	if st := pool.Stat(); st.TotalConns() != n {
		t.Fatalf("pool has %d connections, want %d", st.TotalConns(), n)
	}

	// A cancel request sent to the tunnel reaches the target through the
	// broker.
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg sslmode=disable", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	done := make(chan error, 1)
	go func() { _, err := conn.Exec(ctx, "select pg_sleep(20)"); done <- err }()
	time.Sleep(time.Second)
	start := time.Now()
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("cancelled query: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("query cancelled %v after the request", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("query still running 15s after the cancel request")
	}

	// The token the tunnel started with has expired: a new connection
	// still logs in.
	time.Sleep(4 * time.Second)
	if got, err := psql("select 'after-' || 'refresh'"); err != nil || !strings.Contains(got, "after-refresh") {
		t.Fatalf("psql after the first token expired: %v: %q\ntunnel:\n%s", err, got, tunnelOut)
	}

	// The broker recorded every session as alice.
	pool.Close()
	conn.Close(context.Background())
	want := 1 + n + 1 + 1
	var ss []struct {
		User     string `json:"user"`
		Protocol string `json:"protocol"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ss = ss[:0]
		if err := json.Unmarshal([]byte(b.ok("sam", "sessions", "--protocol", "postgres", "-o", "json")), &ss); err != nil {
			t.Fatal(err)
		}
		if len(ss) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(ss) != want {
		t.Fatalf("sessions: want %d, got %+v", want, ss)
	}
	for _, s := range ss {
		if s.User != "alice" {
			t.Fatalf("session not recorded as alice: %+v", s)
		}
	}

	// Revoking the grant ends a live session through the tunnel with the
	// broker's reason, and new connections are refused.
	live, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg sslmode=disable", port))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(context.Background())
	b.ok("alice", "revoke", grant.ID, "--reason", "done")
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, err := live.Exec(ctx, "select 1")
		if err != nil {
			if !strings.Contains(err.Error(), "access revoked") && !live.IsClosed() {
				t.Fatalf("live session after revoke: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("live session through the tunnel still works 10s after revoke")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := psql("select 1"); err == nil || !strings.Contains(got, "no active grant") {
		t.Fatalf("psql through the tunnel after revoke: %v: %q", err, got)
	}
	if strings.Contains(tunnelOut.String(), "cst_") {
		t.Fatalf("the tunnel printed a token:\n%s", tunnelOut)
	}
}

// startTunnel runs `custos db proxy` as user in the background and returns
// the port it printed and its output.
func startTunnel(t *testing.T, b *brokerProc, user string, args ...string) (int, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(custosBin, append([]string{"db", "proxy", "-o", "json"}, args...)...)
	cmd.Env = append(append(os.Environ(), "CUSTOS_URL="+b.url, "CUSTOS_CONFIG_DIR="+b.homes[user]), b.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	var info struct {
		Port int `json:"port"`
	}
	decoded := make(chan error, 1)
	go func() {
		decoded <- json.NewDecoder(stdout).Decode(&info)
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case err := <-decoded:
		if err != nil || info.Port == 0 {
			t.Fatalf("db proxy did not print its port: %v\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("db proxy did not start:\n%s", out)
	}
	return info.Port, out
}
