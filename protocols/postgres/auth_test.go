package pgproxy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connectErr connects with pgx and returns the server's error.
func connectErr(t *testing.T, s *stack, user, dbname, sslmode, password string) *pgconn.PgError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.conninfo(user, dbname, sslmode)+" password="+password)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("connection as %s to %s was accepted", user, dbname)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("connect: %v (no server error)", err)
	}
	if pe.Severity != "FATAL" {
		t.Errorf("severity = %q, want FATAL", pe.Severity)
	}
	return pe
}

func TestRefusedConnections(t *testing.T) {
	s := newStack(t, func(tg *config.Target, _ *Options) { tg.Postgres.Databases = []string{"nosuchdb"} })
	aliceTok, _ := s.token("alice")
	expired := s.grant("alice")
	expired.StartsAt, expired.EndsAt = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	expiredTok := s.auth.issue(expired)
	revoked := s.grant("alice")
	revoked.State, revoked.RevokedAt, revoked.RevokedBy = broker.GrantRevoked, time.Now().Add(-time.Minute), "bob"
	revokedTok := s.auth.issue(revoked)
	future := s.grant("alice")
	future.StartsAt = time.Now().Add(time.Hour)
	futureTok := s.auth.issue(future)

	tests := []struct {
		name, user, dbname, sslmode, password string
		code, msg                             string
	}{
		{"wrong token", "alice", testTarget, "require", "cdb_not_a_token",
			"28P01", `password authentication failed for user "alice": unknown or expired connection token`},
		{"empty token", "alice", testTarget, "require", "",
			"28P01", `password authentication failed for user "alice"`},
		{"expired grant", "alice", testTarget, "require", expiredTok,
			"28000", `custos: no active grant for user "alice" on target "orders": grant ` + expired.ID + " ended at"},
		{"revoked grant", "alice", testTarget, "require", revokedTok,
			"28000", `custos: no active grant for user "alice" on target "orders"`},
		{"grant not started", "alice", testTarget, "require", futureTok,
			"28000", "starts at"},
		{"other user's token", "mallory", testTarget, "require", aliceTok,
			"28P01", `password authentication failed for user "mallory": connection token was issued for another user or target`},
		{"token for another target", "alice", "payments", "require", aliceTok,
			"28P01", "issued for another user or target"},
		{"no TLS", "alice", testTarget, "disable", aliceTok,
			"28000", "custos: TLS is required for connections to the broker"},
		{"database not allowed", "alice", testTarget + "/secrets", "require", aliceTok,
			"3D000", `custos: database "secrets" is not allowed on target "orders"`},
		{"database missing on the target", "alice", testTarget + "/nosuchdb", "require", aliceTok,
			"3D000", `custos: target "orders": database "nosuchdb" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pe := connectErr(t, s, tt.user, tt.dbname, tt.sslmode, tt.password)
			if pe.Code != tt.code || !strings.Contains(pe.Message, tt.msg) {
				t.Errorf("got %s %q, want %s containing %q", pe.Code, pe.Message, tt.code, tt.msg)
			}
			if strings.Contains(pe.Message, aliceTok) || strings.Contains(pe.Message, s.password) {
				t.Error("a secret leaked into the error")
			}
		})
	}
	// Only the database-missing case got as far as credentials.
	if n := s.creds.count(); n != 1 {
		t.Errorf("credentials issued %d times, want 1 (only after a valid token and grant)", n)
	}
	if n := len(s.audit.Wait(t, "session.refused", broker.OutcomeDenied, len(tests))); n != len(tests) {
		t.Errorf("denied audit records = %d, want %d", n, len(tests))
	}
	if len(s.rec.All()) != 0 {
		t.Errorf("%d recordings started for refused connections", len(s.rec.All()))
	}
}

func TestProxyChecksTheGrantItself(t *testing.T) {
	// An authenticator that returns the token owner's grant to anyone:
	// the proxy must still refuse another user.
	s := newStack(t)
	s.auth.naive = true
	aliceTok, _ := s.token("alice")
	pe := connectErr(t, s, "mallory", testTarget, "require", aliceTok)
	if pe.Code != "28P01" || !strings.Contains(pe.Message, "token is not valid for this user and target") {
		t.Errorf("got %s %q", pe.Code, pe.Message)
	}
}

func TestPsqlShowsRefusals(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	tests := []struct {
		name, conninfo, password, want string
	}{
		{"wrong token", "sslmode=require", "cdb_wrong",
			`FATAL:  password authentication failed for user "alice": unknown or expired connection token`},
		{"no TLS", "sslmode=disable", tok, "FATAL:  custos: TLS is required for connections to the broker"},
		{"replication", "sslmode=require replication=database", tok,
			"FATAL:  custos: replication connections are not allowed through the broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := s.runPsqlConn(t, s.conninfo("alice", testTarget, "require")+" "+tt.conninfo, tt.password, "SELECT 1;")
			if err == nil || !strings.Contains(out, tt.want) {
				t.Errorf("psql: err=%v output:\n%s\nwant %q", err, out, tt.want)
			}
		})
	}
}

func TestLoginFailuresAfterAuthentication(t *testing.T) {
	t.Run("credentials unavailable", func(t *testing.T) {
		s := newStack(t)
		s.creds.err = errors.New("vault: permission denied for database/creds/rw")
		tok, _ := s.token("alice")
		pe := connectErr(t, s, "alice", testTarget, "require", tok)
		if pe.Code != "57P03" || pe.Message != "custos: credentials unavailable for target orders" {
			t.Errorf("got %s %q", pe.Code, pe.Message)
		}
	})
	t.Run("recording unavailable", func(t *testing.T) {
		s := newStack(t)
		s.rec.StartErr = errors.New("recording store unavailable")
		tok, _ := s.token("alice")
		pe := connectErr(t, s, "alice", testTarget, "require", tok)
		if pe.Code != "57P03" || !strings.Contains(pe.Message, "session recording unavailable; connection refused (fail-closed)") {
			t.Errorf("got %s %q", pe.Code, pe.Message)
		}
		assertNoBackends(t, s)
		s.creds.waitEnded(t)
	})
	t.Run("recording unavailable on a fail-open target", func(t *testing.T) {
		s := newStack(t, func(tg *config.Target, _ *Options) { tg.Recording.FailOpen = true })
		s.rec.StartErr = errors.New("recording store unavailable")
		tok, _ := s.token("alice")
		conn := s.connect(t, "alice", tok)
		var one int
		if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		if len(s.audit.Find("session.record_fail_open", broker.OutcomeError)) != 1 {
			t.Error("fail-open session not audited")
		}
	})
	t.Run("wrong upstream password", func(t *testing.T) {
		s := newStack(t)
		s.creds.password = "not-the-password"
		tok, _ := s.token("alice")
		pe := connectErr(t, s, "alice", testTarget, "require", tok)
		if pe.Code != "08006" || pe.Message != `custos: cannot log in to target "orders"` {
			t.Errorf("got %s %q", pe.Code, pe.Message)
		}
		s.creds.waitEnded(t)
	})
	t.Run("an ended session gives its login back", func(t *testing.T) {
		s := newStack(t)
		tok, _ := s.token("alice")
		conn := s.connect(t, "alice", tok)
		if _, err := conn.Exec(context.Background(), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		conn.Close(context.Background())
		s.creds.waitEnded(t)
	})
}

// assertNoBackends checks that the test role has no backend left.
func assertNoBackends(t *testing.T, s *stack) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", s.role).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends of %s left on the target", n, s.role)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRoleOption shows the client picking the role with its options
// (PGOPTIONS='-c custos.role=...'): the authenticator is asked for that
// role, and the option never reaches the target while the client's other
// options do.
func TestRoleOption(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	out, err := s.runPsqlConn(t, s.conninfo("alice", testTarget, "require")+
		` options='-c custos.role=readwrite -c work_mem=3MB'`, tok,
		"SHOW work_mem;\nSELECT coalesce(current_setting('custos.role', true), '<unset>');")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if !strings.Contains(out, "3MB") || !strings.Contains(out, "<unset>") {
		t.Errorf("upstream options: %s", out)
	}
	s.auth.mu.Lock()
	roles := slices.Clone(s.auth.roles)
	s.auth.mu.Unlock()
	if len(roles) != 1 || roles[0] != "readwrite" {
		t.Errorf("roles asked for: %q", roles)
	}
}

func TestSplitRoleOption(t *testing.T) {
	tests := []struct {
		in, role, rest string
	}{
		{"", "", ""},
		{"-c custos.role=rw", "rw", ""},
		{"-ccustos.role=rw", "rw", ""},
		{"--custos.role=rw", "rw", ""},
		{"-c search_path=a -c custos.role=ro -c work_mem=64MB", "ro", "-c search_path=a -c work_mem=64MB"},
		{`-c search_path=a\ b`, "", `-c search_path=a\ b`},
		{`-c application_name=x\\y`, "", `-c application_name=x\\y`},
		{"  -c   custos.role=rw  ", "rw", ""},
		{"-c", "", "-c"},
		{"-c custos.rolex=rw", "", "-c custos.rolex=rw"},
	}
	for _, tt := range tests {
		role, rest := splitRoleOption(tt.in)
		if role != tt.role || rest != tt.rest {
			t.Errorf("splitRoleOption(%q) = %q, %q; want %q, %q", tt.in, role, rest, tt.role, tt.rest)
		}
	}
}
