package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/deploy/devstack"
)

// grant has alice request target/role for d and bob approve it.
func (s *fullStack) grant(target, role, d string) jsonGrant {
	s.b.t.Helper()
	req := decode[jsonRequest](s.b.t, s.b.ok("alice", "request", target, "--role", role, "--for", d, "--reason", "INC-15", "-o", "json"))
	return *decode[decided](s.b.t, s.b.ok("bob", "approve", req.ID, "-o", "json")).Grant
}

// psql runs one statement with the real psql through the proxy.
func (s *fullStack) psql(token, sql string) (string, error) {
	return s.psqlRole(token, "", sql)
}

// psqlRole is psql as one role of the target (PGOPTIONS -c custos.role).
func (s *fullStack) psqlRole(token, role, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", s.pgPort), "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	if role != "" {
		cmd.Env = append(cmd.Env, "PGOPTIONS=-c custos.role="+role)
	}
	o, err := cmd.CombinedOutput()
	return string(o), err
}

// pgxConn opens a pgx connection through the proxy as alice, as role
// when set.
func (s *fullStack) pgxConn(ctx context.Context, token, role string) *pgx.Conn {
	s.b.t.Helper()
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require password=%s", s.pgPort, token)
	if role != "" {
		dsn += " options='-c custos.role=" + role + "'"
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		s.b.t.Fatalf("pgx through the proxy: %v\nbroker log:\n%s", err, s.b.logs)
	}
	return c
}

// sshTicker runs an ssh session through the proxy whose remote shell
// prints ssh-tick-N every 100 ms for two minutes; seen holds the last N
// the client read, done closes when its output ends.
func (s *fullStack) sshTicker(ctx context.Context) (seen *atomic.Int64, done <-chan struct{}) {
	t := s.b.t
	t.Helper()
	cmd := exec.CommandContext(ctx, "ssh", "-i", s.alice, "-p", fmt.Sprint(s.sshPort), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "demo-ssh@127.0.0.1",
		"i=0; while [ $i -lt 1200 ]; do echo ssh-tick-$i; i=$((i+1)); sleep 0.1; done")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	seen = &atomic.Int64{}
	seen.Store(-1)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "ssh-tick-")); err == nil {
				seen.Store(int64(n))
			}
		}
	}()
	return seen, ch
}

// roleExists reports whether the target has a role named name.
func roleExists(t *testing.T, pg *devstack.Postgres, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// auditRec is one record of `custos audit list -o json`.
type auditRec struct {
	Time    time.Time      `json:"time"`
	Action  string         `json:"action"`
	Outcome string         `json:"outcome"`
	Reason  string         `json:"reason"`
	Details map[string]any `json:"details"`
}

// tcpGate relays connections to a backend and can be closed and opened
// again on the same address: to the broker, a stopped component.
type tcpGate struct {
	addr, backend string
	mu            sync.Mutex
	ln            net.Listener
	conns         map[net.Conn]bool
}

func newTCPGate(t *testing.T, backend string) *tcpGate {
	g := &tcpGate{addr: fmt.Sprintf("127.0.0.1:%d", devstack.FreePort(t)), backend: backend, conns: map[net.Conn]bool{}}
	g.open(t)
	t.Cleanup(g.close)
	return g
}

// open listens again on the gate's address and relays.
func (g *tcpGate) open(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ln, err = net.Listen("tcp", g.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gate: %v", err)
		}
	}
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.relay(c)
		}
	}()
}

func (g *tcpGate) relay(c net.Conn) {
	u, err := net.DialTimeout("tcp", g.backend, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	if g.ln == nil {
		g.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	g.conns[c], g.conns[u] = true, true
	g.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	g.mu.Lock()
	delete(g.conns, c)
	delete(g.conns, u)
	g.mu.Unlock()
}

// close stops listening and cuts every relayed connection: connections
// to the gate are refused until open.
func (g *tcpGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
	}
	g.conns = map[net.Conn]bool{}
}

// pgTicker runs `select 'TAG-N'` on conn every 100 ms until stop is
// called; seen holds the last N the client read, done gets the error that
// ended the loop (nil after stop).
func pgTicker(ctx context.Context, conn *pgx.Conn, tag string) (seen *atomic.Int64, stop func(), done <-chan error) {
	seen = &atomic.Int64{}
	seen.Store(-1)
	var stopped atomic.Bool
	ch := make(chan error, 1)
	go func() {
		for i := 0; !stopped.Load(); i++ {
			var got string
			if err := conn.QueryRow(ctx, fmt.Sprintf("select '%s-%d'", tag, i)).Scan(&got); err != nil {
				ch <- err
				return
			}
			seen.Store(int64(i))
			time.Sleep(100 * time.Millisecond)
		}
		ch <- nil
	}()
	return seen, func() { stopped.Store(true) }, ch
}
