package sshproxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
)

// blockingCreds holds every upstream login until release is closed.
type blockingCreds struct {
	next    credentials
	entered chan struct{}
	release chan struct{}
}

func (b *blockingCreds) SSHSigner(ctx context.Context, g broker.Grant, sessionID string) (ssh.Signer, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.next.SSHSigner(ctx, g, sessionID)
}

// A grant revoked during the upstream login ends the session within a
// second, announced or not, even with a second grant for the same role.
func TestRevokeDuringUpstreamLogin(t *testing.T) {
	for _, announce := range []bool{true, false} {
		t.Run(map[bool]string{true: "revocation announced", false: "second grant, announcement missed"}[announce], func(t *testing.T) {
			bc := &blockingCreds{entered: make(chan struct{}, 4), release: make(chan struct{})}
			e := newEnvOptions(t, nil, func(o *Options) { bc.next = o.Credentials; o.Credentials = bc })
			if !announce {
				// It ends earlier, so the connection picks the first.
				g := e.grant
				g.ID, g.EndsAt = broker.NewID("grt"), e.grant.EndsAt.Add(-time.Minute)
				e.grants.Set(g)
			}
			released := make(chan time.Time, 1)
			go func() {
				<-bc.entered
				e.grants.Revoke(e.grant.ID)
				if announce {
					e.proxy.TerminateGrant(e.grant.ID, "revoked by carol")
				}
				released <- time.Now()
				close(bc.release)
			}()
			r := e.ssh(testTarget, "echo should-not-run; sleep 30")
			if took := time.Since(<-released); took > time.Second {
				t.Errorf("session of the revoked grant ended %s after its login", took)
			}
			if strings.Contains(r.stdout, "should-not-run") || r.code == 0 || !strings.Contains(r.stderr, "access revoked") {
				t.Fatalf("the revoked grant's session ran: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			if n := len(e.proxy.Sessions()); n != 0 {
				t.Errorf("%d sessions still tracked", n)
			}
		})
	}
}
