package pgproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// waitErr waits for a query's error.
func waitErr(t *testing.T, errc <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(within):
		t.Fatalf("no error within %v", within)
		return nil
	}
}

func wantRevoked(t *testing.T, err error, reason string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v, want a server error", err)
	}
	if pe.Severity != "FATAL" || pe.Code != "57P01" || pe.Message != "access revoked: "+reason {
		t.Errorf("got %s %s %q, want FATAL 57P01 %q", pe.Severity, pe.Code, pe.Message, "access revoked: "+reason)
	}
}

func TestRevokeEndsARunningQueryWithinASecond(t *testing.T) {
	s := newStack(t)
	tok, g := s.token("alice")
	conn := s.connect(t, "alice", tok)
	bystanderTok, _ := s.token("bob")
	bystander := s.connect(t, "bob", bystanderTok)

	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)")
		errc <- err
	}()
	rec := s.rec.All()[0]
	rec.WaitFor(t, "the pg_sleep query", func(evs []event.Event) bool { return len(kinds(evs, event.KindPGQuery)) > 0 })
	time.Sleep(100 * time.Millisecond)

	start := time.Now()
	if n := s.proxy.TerminateGrant(g.ID, "revoked by carol: INC-1 closed"); n != 1 {
		t.Fatalf("TerminateGrant ended %d sessions, want 1", n)
	}
	err := waitErr(t, errc, time.Second)
	if took := time.Since(start); took > time.Second {
		t.Errorf("client saw the revocation after %v", took)
	}
	wantRevoked(t, err, "revoked by carol: INC-1 closed")

	evs := rec.WaitClosed(t)
	end := evs[len(evs)-1]
	if end.Kind != event.KindEnd || end.Op != "terminated" || end.Name != "broker" || end.Text != "access revoked: revoked by carol: INC-1 closed" {
		t.Errorf("end event = %+v", end)
	}
	// The target's backend is gone too: the running query was cancelled
	// and the connection closed.
	ctx := context.Background()
	su, err := pgx.Connect(ctx, s.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND usename = $1", s.role).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoked session's query still runs on the target")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var one int
	if err := bystander.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("another grant's session was ended: %v", err)
	}
	if len(s.proxy.Sessions()) != 1 {
		t.Errorf("live sessions = %+v, want only the bystander", s.proxy.Sessions())
	}
}

func TestRevokeIsShownByIdlePsql(t *testing.T) {
	s := newStack(t)
	tok, g := s.token("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.psql, "-X", "-d", s.conninfo("alice", testTarget, "require"))
	cmd.Env = append(cleanPGEnv(), "PGPASSWORD="+tok)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	var out strings.Builder
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	io.WriteString(stdin, "SELECT 'ready' AS state;\n")
	waitLine(t, lines, &out, "ready")

	rec := s.rec.Last(t)
	start := time.Now()
	s.proxy.TerminateGrant(g.ID, "grant revoked by carol")
	rec.WaitClosed(t)
	if took := time.Since(start); took > time.Second {
		t.Errorf("session closed %v after revocation", took)
	}
	// psql notices on its next command and shows the broker's message.
	io.WriteString(stdin, "SELECT 2;\n")
	stdin.Close()
	for l := range lines {
		out.WriteString(l + "\n")
	}
	cmd.Wait()
	if !strings.Contains(out.String(), "FATAL:  access revoked: grant revoked by carol") {
		t.Errorf("psql output lacks the revocation:\n%s", out.String())
	}
}

func waitLine(t *testing.T, lines <-chan string, out *strings.Builder, want string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("psql exited before %q:\n%s", want, out.String())
			}
			out.WriteString(l + "\n")
			if strings.Contains(l, want) {
				return
			}
		case <-timeout:
			t.Fatalf("psql never printed %q:\n%s", want, out.String())
		}
	}
}

func TestGrantEndTerminatesSessions(t *testing.T) {
	t.Run("grant expires", func(t *testing.T) {
		s := newStack(t)
		g := s.grant("alice")
		g.EndsAt = time.Now().Add(1500 * time.Millisecond)
		conn := s.connect(t, "alice", s.auth.issue(g))
		errc := make(chan error, 1)
		go func() {
			_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)")
			errc <- err
		}()
		err := waitErr(t, errc, 3*time.Second)
		if late := time.Since(g.EndsAt); late > time.Second {
			t.Errorf("session ended %v after the grant", late)
		}
		wantRevoked(t, err, "grant expired")
	})
	t.Run("store announces revocation", func(t *testing.T) {
		s := newStack(t)
		tok, g := s.token("alice")
		conn := s.connect(t, "alice", tok)
		events := make(chan broker.GrantEvent, 1)
		done := make(chan struct{})
		go func() { s.proxy.WatchGrants(events); close(done) }()
		events <- broker.GrantEvent{GrantID: g.ID, State: broker.GrantRevoked, Reason: "revoked by carol"}
		close(events)
		<-done
		_, err := conn.Exec(context.Background(), "SELECT 1")
		wantRevoked(t, err, "revoked by carol")
	})
	t.Run("broker shuts down", func(t *testing.T) {
		s := newStack(t)
		tok, _ := s.token("alice")
		conn := s.connect(t, "alice", tok)
		s.proxy.Close()
		_, err := conn.Exec(context.Background(), "SELECT 1")
		wantRevoked(t, err, "broker shutting down")
	})
}

func TestIdleTimeout(t *testing.T) {
	s := newStack(t, func(tg *config.Target, _ *Options) { tg.Roles[0].IdleTimeout = config.Duration(700 * time.Millisecond) })
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx := context.Background()
	// Activity keeps the session alive past the timeout.
	for range 4 {
		time.Sleep(300 * time.Millisecond)
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("active session ended: %v", err)
		}
	}
	time.Sleep(1200 * time.Millisecond)
	_, err := conn.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P05" || !strings.Contains(pe.Message, "idle for 700ms") {
		t.Fatalf("idle session: %v", err)
	}
}

func TestRecorderFailureEndsTheSessionBeforeTheStatementRuns(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE audit_me (v text)"); err != nil {
		t.Fatal(err)
	}
	rec := s.rec.Last(t)
	rec.FailNext() // the next event fails
	_, err := conn.Exec(ctx, "INSERT INTO audit_me VALUES ('unrecorded')", pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || pe.Message != "custos: session recording failed; session ended (fail-closed)" {
		t.Fatalf("insert with a failed recorder: %v", err)
	}
	su, err := pgx.Connect(ctx, s.pg.DSN(s.db))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var n int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM audit_me").Scan(&n); err != nil || n != 0 {
		t.Fatalf("unrecorded statement reached the target: %d rows, %v", n, err)
	}
}
