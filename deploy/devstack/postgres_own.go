package devstack

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// ownServer is what a test's own PostgreSQL server needs to stop and
// start again on the same port and data directory.
type ownServer struct {
	mu   sync.Mutex
	opts pgOptions
	proc *process // nil while stopped
}

// StartOwnPostgres starts a PostgreSQL server for tb alone, apart from the
// shared one StartPostgres returns, so the test may Stop and Start it (a
// state store restarted under a running broker). It is stopped when the
// test ends.
func StartOwnPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	binDir, err := postgresBinDir()
	if err != nil {
		unavailable(tb, fmt.Sprintf("PostgreSQL 15 server not found: %v; install with `apt-get install -y postgresql-15` or %s", err, InstallHint))
	}
	dir, err := workDir("postgres-own")
	if err != nil {
		tb.Fatalf("devstack: postgres: %v", err)
	}
	tlsDir, err := workDir("tls")
	if err != nil {
		tb.Fatalf("devstack: postgres: %v", err)
	}
	tls, err := ensureDevTLS(tlsDir)
	if err != nil {
		tb.Fatalf("devstack: postgres: %v", err)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("devstack: postgres: %v", err)
	}
	o := pgOptions{binDir: binDir, dir: dir, port: port, password: randomToken(16), tls: tls, fast: true}
	pg, proc, err := launchPostgres(o)
	if err != nil {
		tb.Fatalf("devstack: postgres: %v", err)
	}
	pg.own = &ownServer{opts: o, proc: proc}
	tb.Cleanup(func() { pg.own.stop() })
	return pg
}

// Stop shuts the server down as an operator's restart does (fast
// shutdown: clients are disconnected, open transactions roll back) and
// returns once it has exited. Only a server from StartOwnPostgres can be
// stopped.
func (p *Postgres) Stop(tb testing.TB) {
	tb.Helper()
	if p.own == nil {
		tb.Fatal("devstack: postgres: only a test's own server (StartOwnPostgres) can be stopped")
	}
	p.own.stop()
}

// Start starts a stopped server again on the same port and data
// directory, and returns once it accepts connections.
func (p *Postgres) Start(tb testing.TB) {
	tb.Helper()
	if p.own == nil {
		tb.Fatal("devstack: postgres: only a test's own server (StartOwnPostgres) can be started again")
	}
	p.own.mu.Lock()
	defer p.own.mu.Unlock()
	if p.own.proc != nil {
		tb.Fatal("devstack: postgres: already running")
	}
	// The port was ours a moment ago; a slow exit can hold it briefly.
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if portFree(p.own.opts.port) || time.Now().After(deadline) {
			break
		}
	}
	_, p.own.proc, err = launchPostgres(p.own.opts)
	if err != nil {
		tb.Fatalf("devstack: postgres: restart: %v", err)
	}
}

func (o *ownServer) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.proc == nil {
		return
	}
	o.proc.stop(10 * time.Second)
	unregister(o.proc)
	o.proc = nil
}
