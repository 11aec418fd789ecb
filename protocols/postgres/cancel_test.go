package pgproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestCancelKeysShareAPIDAcrossTargets: two sessions on different targets
// may get the same backend PID; each cancel key finds its own session, and
// the PID alone (public in pg_stat_activity) finds none.
func TestCancelKeysShareAPIDAcrossTargets(t *testing.T) {
	p := &Proxy{byPID: make(map[uint32][]*session)}
	a, b := &session{upstreamPID: 4242}, &session{upstreamPID: 4242}
	for _, s := range []*session{a, b} {
		if err := p.registerCancelKey(s); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Equal(a.keySecret, b.keySecret) {
		t.Fatal("two sessions with one PID got the same secret")
	}
	if got := p.lookupCancel(cancelKey{PID: 4242, Secret: a.keySecret}); got != a {
		t.Errorf("a's key found %p, want a", got)
	}
	if got := p.lookupCancel(cancelKey{PID: 4242, Secret: b.keySecret}); got != b {
		t.Errorf("b's key found %p, want b", got)
	}
	wrong := bytes.Clone(a.keySecret)
	wrong[0] ^= 0xff
	if bytes.Equal(wrong, b.keySecret) {
		wrong[1] ^= 0xff
	}
	for _, k := range []cancelKey{{PID: 4242, Secret: wrong}, {PID: 4242}, {PID: 4243, Secret: a.keySecret}} {
		if got := p.lookupCancel(k); got != nil {
			t.Errorf("key %d/%x found a session", k.PID, k.Secret)
		}
	}
	p.unregisterCancelKey(a)
	if p.lookupCancel(cancelKey{PID: 4242, Secret: a.keySecret}) != nil {
		t.Error("an ended session's key still cancels")
	}
	if p.lookupCancel(cancelKey{PID: 4242, Secret: b.keySecret}) != b {
		t.Error("ending a lost b's key")
	}
	p.unregisterCancelKey(b)
	if len(p.byPID) != 0 {
		t.Errorf("registry not empty: %v", p.byPID)
	}
}

// TestBackendKeyDataIsTheTargetPID: the PID a client gets is its backend's
// on the target, so pg_backend_pid(), pg_stat_activity and
// pg_terminate_backend agree with what drivers and tools show; the secret
// is the broker's, not the target's.
func TestBackendKeyDataIsTheTargetPID(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := s.connect(t, "alice", mustToken(s, "alice"))
	var pid uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if got := conn.PgConn().PID(); got != pid {
		t.Fatalf("BackendKeyData PID = %d, pg_backend_pid() = %d", got, pid)
	}
	var sess *session
	s.proxy.mu.Lock()
	if ss := s.proxy.byPID[pid]; len(ss) == 1 {
		sess = ss[0]
	}
	s.proxy.mu.Unlock()
	if sess == nil {
		t.Fatalf("no session registered under PID %d", pid)
	}
	if bytes.Equal(sess.upstreamSecret, conn.PgConn().SecretKey()) || !bytes.Equal(sess.keySecret, conn.PgConn().SecretKey()) {
		t.Error("the client got the target's cancel secret instead of the broker's")
	}

	// An operator ends the session by the PID the tool shows.
	super(t, s.pg, s.db, fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid))
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Fatal("session still answers after pg_terminate_backend on its PID")
	}
	s.waitNoSessions(t)
}

// TestPlaintextCancelNeedsTheBrokerSecret: libpq sends cancel requests in
// plaintext even on a TLS session, and the proxy (TLS required) accepts
// them; the target's PID with a wrong secret cancels nothing.
func TestPlaintextCancelNeedsTheBrokerSecret(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := s.connect(t, "alice", mustToken(s, "alice"))
	pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		errc <- err
	}()
	waitActive(t, s, pid, "pg_sleep")

	wrong := bytes.Clone(secret)
	wrong[0] ^= 0xff
	s.sendCancel(t, pid, wrong)
	select {
	case err := <-errc:
		t.Fatalf("a cancel with the right PID and a wrong secret ended the query: %v", err)
	case <-time.After(time.Second):
	}

	s.sendCancel(t, pid, secret)
	select {
	case err := <-errc:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("pg_sleep after cancel: %v, want 57014", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("plaintext cancel request did not cancel pg_sleep")
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("session unusable after cancel: %v", err)
	}
}

// TestPgxContextCancel: pgx cancels a statement when its context ends by
// sending a CancelRequest over TLS; the statement stops on the target and
// the session stays usable.
func TestPgxContextCancel(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(s.conninfo("alice", testTarget, "require") + " password=" + mustToken(s, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 10 * time.Second}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	qctx, qcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	start := time.Now()
	_, err = conn.Exec(qctx, "SELECT pg_sleep(30)")
	qcancel()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("pg_sleep with an ending context: %v, want 57014", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancel took %v", took)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("session unusable after cancel: %v", err)
	}
}

// sendCancel sends a CancelRequest to the proxy in plaintext, as libpq
// does, and waits for the proxy to close the connection.
func (s *stack) sendCancel(t *testing.T, pid uint32, secret []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg, _ := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("proxy answered a cancel request: %d bytes, %v", n, err)
	}
}

// waitActive waits until the target shows backend pid running a query
// containing text.
func waitActive(t *testing.T, s *stack, pid uint32, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for ctx.Err() == nil {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%'||$2||'%'",
			int32(pid), text).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("backend %d never ran %q", pid, text)
}
