package pgproxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// blockingCreds holds every upstream login until release is closed, so a
// test can act while a session is being admitted.
type blockingCreds struct {
	credentials
	entered chan struct{} // gets one value per login started
	release chan struct{}
}

func (b *blockingCreds) PostgresLogin(ctx context.Context, g broker.Grant, sessionID string) (string, string, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.credentials.PostgresLogin(ctx, g, sessionID)
}

// A grant revoked while the session's upstream login is in flight ends
// that session within a second of the login completing, whether the
// revocation reached the proxy as an event or only the store knows it, and
// even when the user holds another grant for the same role.
func TestRevokeDuringUpstreamLogin(t *testing.T) {
	// Without the announcement the user still holds a second active grant
	// for the role.
	for _, announce := range []bool{true, false} {
		t.Run(map[bool]string{true: "revocation announced", false: "second grant, announcement missed"}[announce], func(t *testing.T) {
			bc := &blockingCreds{entered: make(chan struct{}, 4), release: make(chan struct{})}
			s := newStack(t, func(_ *config.Target, o *Options) { bc.credentials = o.Credentials; o.Credentials = bc })
			tok, g := s.token("alice")
			if !announce {
				other := s.grant("alice")
				other.EndsAt = g.EndsAt.Add(-time.Minute)
				s.auth.issue(other)
			}
			type result struct {
				conn *pgx.Conn
				err  error
			}
			connected := make(chan result, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c, err := pgx.Connect(ctx, s.conninfo("alice", testTarget, "require")+" password="+tok)
				connected <- result{c, err}
			}()
			select {
			case <-bc.entered:
			case <-time.After(20 * time.Second):
				t.Fatal("no upstream login")
			}
			s.auth.Revoke(g.ID)
			if announce {
				s.proxy.TerminateGrant(g.ID, "revoked by carol")
			}
			released := time.Now()
			close(bc.release)
			var r result
			select {
			case r = <-connected:
			case <-time.After(time.Second):
				t.Fatal("login still running 1s after the upstream login was released")
			}
			if r.err == nil {
				defer r.conn.Close(context.Background())
				ctx, cancel := context.WithTimeout(context.Background(), time.Second-time.Since(released))
				defer cancel()
				_, r.err = r.conn.Exec(ctx, "SELECT 1")
				if r.err == nil {
					t.Fatal("the revoked grant's session runs statements")
				}
			}
			if took := time.Since(released); took > time.Second {
				t.Errorf("session ended %s after the login was released", took)
			}
			var pe *pgconn.PgError
			if !errors.As(r.err, &pe) || pe.Code != "57P01" {
				t.Errorf("error %v, want FATAL 57P01 access revoked", r.err)
			}
			s.waitNoSessions(t)
			s.creds.waitEnded(t)
		})
	}
}
