package pgproxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// blockingCreds holds every upstream login until release is closed.
type blockingCreds struct {
	credentials
	entered chan struct{}
	release chan struct{}
}

func (b *blockingCreds) PostgresLogin(ctx context.Context, g broker.Grant, sessionID string) (string, string, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.credentials.PostgresLogin(ctx, g, sessionID)
}

// A grant revoked during the upstream login ends the session within a
// second, announced or not, even with a second grant for the same role.
func TestRevokeDuringUpstreamLogin(t *testing.T) {
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
			released := make(chan time.Time, 1)
			go func() {
				<-bc.entered
				s.auth.Revoke(g.ID)
				if announce {
					s.proxy.TerminateGrant(g.ID, "revoked by carol")
				}
				released <- time.Now()
				close(bc.release)
			}()
			pe := connectErr(t, s, "alice", testTarget, "require", tok)
			if took := time.Since(<-released); took > time.Second {
				t.Errorf("session ended %s after the login was released", took)
			}
			if pe.Code != "57P01" || !strings.HasPrefix(pe.Message, "access revoked") {
				t.Errorf("got %s %q, want 57P01 access revoked", pe.Code, pe.Message)
			}
			s.waitNoSessions(t)
			s.creds.waitEnded(t)
		})
	}
}
