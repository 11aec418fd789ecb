package pgproxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawDial connects to the proxy; with ssl it negotiates TLS first.
func rawDial(t *testing.T, s *stack, ssl bool) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if !ssl {
		return c
	}
	if _, err := c.Write(encode(t, &pgproto3.SSLRequest{})); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest answer %q, %v", b, err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// rawLogin logs in over conn and returns a frontend ready for queries.
func rawLogin(t *testing.T, conn net.Conn, user, token string) *pgproto3.Frontend {
	t.Helper()
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": user, "database": testTarget}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			fe.Send(&pgproto3.PasswordMessage{Password: token})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
		case *pgproto3.ReadyForQuery:
			return fe
		case *pgproto3.ErrorResponse:
			t.Fatalf("login: %s %s", m.Code, m.Message)
		}
	}
}

// expectFatal reads until an ErrorResponse and then expects the connection
// to close.
func expectFatal(t *testing.T, fe *pgproto3.Frontend, code, msg string) {
	t.Helper()
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("connection ended without an ErrorResponse: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			if e.Severity != "FATAL" || e.Code != code || !strings.Contains(e.Message, msg) {
				t.Errorf("got %s %s %q, want FATAL %s containing %q", e.Severity, e.Code, e.Message, code, msg)
			}
			break
		}
	}
	if m, err := fe.Receive(); err == nil {
		t.Errorf("connection still open after FATAL: got %T", m)
	}
}

func TestProtocolErrorsAreAnsweredAndClosed(t *testing.T) {
	s := newStack(t, func(_ *config.Target, o *Options) { o.MaxMessageSize = 64 << 10 })
	tok, _ := s.token("alice")

	t.Run("oversized message", func(t *testing.T) {
		conn := rawDial(t, s, true)
		fe := rawLogin(t, conn, "alice", tok)
		hdr := []byte{'Q', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(hdr[1:], 100<<20)
		conn.Write(hdr)
		expectFatal(t, fe, "08P01", "custos: invalid message from client: message type 'Q': message too large")
	})
	t.Run("oversized copy data", func(t *testing.T) {
		conn := rawDial(t, s, true)
		fe := rawLogin(t, conn, "alice", tok)
		hdr := []byte{'d', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(hdr[1:], 1<<20)
		conn.Write(hdr)
		expectFatal(t, fe, "08P01", "message too large")
	})
	t.Run("unknown message type", func(t *testing.T) {
		conn := rawDial(t, s, true)
		fe := rawLogin(t, conn, "alice", tok)
		conn.Write([]byte{'Y', 0, 0, 0, 4})
		expectFatal(t, fe, "08P01", "invalid frontend message type")
	})
	t.Run("malformed bind", func(t *testing.T) {
		conn := rawDial(t, s, true)
		fe := rawLogin(t, conn, "alice", tok)
		conn.Write([]byte{'B', 0, 0, 0, 6, 0, 0})
		expectFatal(t, fe, "08P01", "invalid Bind message")
	})
	t.Run("protocol 2", func(t *testing.T) {
		conn := rawDial(t, s, true)
		fe := pgproto3.NewFrontend(conn, conn)
		conn.Write([]byte{0, 0, 0, 8, 0, 2, 0, 0})
		expectFatal(t, fe, "0A000", "unsupported frontend protocol 2.0")
	})
	t.Run("startup packet too long", func(t *testing.T) {
		conn := rawDial(t, s, true)
		fe := pgproto3.NewFrontend(conn, conn)
		conn.Write([]byte{0, 1, 0, 0, 0, 3, 0, 0})
		expectFatal(t, fe, "08P01", "invalid startup packet length")
	})
	t.Run("password message too long", func(t *testing.T) {
		conn := rawDial(t, s, true)
		fe := pgproto3.NewFrontend(conn, conn)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": testTarget}})
		fe.Flush()
		if m, err := fe.Receive(); err != nil {
			t.Fatal(err)
		} else if _, ok := m.(*pgproto3.AuthenticationCleartextPassword); !ok {
			t.Fatalf("got %T", m)
		}
		conn.Write([]byte{'p', 0, 1, 0, 0})
		expectFatal(t, fe, "08P01", "invalid password message length")
	})
	// The proxy still serves after all that.
	conn := s.connect(t, "alice", tok)
	var one int
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
}

func TestNegotiation(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")

	t.Run("GSSENC refused, then TLS", func(t *testing.T) {
		conn := rawDial(t, s, false)
		conn.Write(encode(t, &pgproto3.GSSEncRequest{}))
		b := make([]byte, 1)
		if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'N' {
			t.Fatalf("GSSENCRequest answer %q, %v", b, err)
		}
		conn.Write(encode(t, &pgproto3.SSLRequest{}))
		if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'S' {
			t.Fatalf("SSLRequest answer %q, %v", b, err)
		}
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		rawLogin(t, tc, "alice", tok)
	})
	t.Run("newer minor version and protocol options", func(t *testing.T) {
		conn := rawDial(t, s, true)
		body := binary.BigEndian.AppendUint32(nil, 3<<16|2)
		for _, kv := range []string{"user", "alice", "database", testTarget, "_pq_.compression", "on"} {
			body = append(append(body, kv...), 0)
		}
		body = append(body, 0)
		conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(4+len(body))), body...))
		fe := pgproto3.NewFrontend(conn, conn)
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		npv, ok := m.(*pgproto3.NegotiateProtocolVersion)
		if !ok || npv.NewestMinorProtocol != 0 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.compression" {
			t.Fatalf("got %#v, want NegotiateProtocolVersion 3.0 refusing _pq_.compression", m)
		}
	})
	t.Run("direct TLS", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.conninfo("alice", testTarget, "require")+" sslnegotiation=direct password="+tok)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cancel with an unknown key is ignored", func(t *testing.T) {
		conn := rawDial(t, s, false)
		conn.Write(encode(t, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("after cancel: %v, want EOF", err)
		}
	})
	t.Run("dbname with a database", func(t *testing.T) {
		s2 := newStack(t, func(tg *config.Target, _ *Options) { tg.Postgres.Databases = []string{"postgres"} })
		tok2, _ := s2.token("alice")
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, s2.conninfo("alice", testTarget+"/postgres", "require")+" password="+tok2)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var db string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "postgres" {
			t.Fatalf("current_database = %q, %v", db, err)
		}
		conn.Close(ctx)
		if h := s2.rec.Last(t).Header; h.Database != "postgres" {
			t.Errorf("recorded database = %q", h.Database)
		}
	})
	t.Run("application_name reaches the target", func(t *testing.T) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, s.conninfo("alice", testTarget, "require")+" application_name=reporting password="+tok)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var app string
		if err := conn.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil || app != "reporting" {
			t.Fatalf("application_name = %q, %v", app, err)
		}
	})
}
