package sshproxy

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
)

// blockingCreds holds every upstream login until release is closed, so a
// test can act while a session is being admitted.
type blockingCreds struct {
	next    credentials
	entered chan struct{} // gets one value per login started
	release chan struct{}
}

func (b *blockingCreds) SSHSigner(ctx context.Context, g broker.Grant, sessionID string) (ssh.Signer, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.next.SSHSigner(ctx, g, sessionID)
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
			e := newEnvOptions(t, nil, func(o *Options) { bc.next = o.Credentials; o.Credentials = bc })
			if !announce {
				// It ends earlier, so the connection picks the first.
				g := e.grant
				g.ID, g.EndsAt = broker.NewID("grt"), e.grant.EndsAt.Add(-time.Minute)
				e.grants.Set(g)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ssh", e.sshArgs(testTarget, "echo should-not-run; sleep 30")...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-bc.entered:
			case <-time.After(20 * time.Second):
				t.Fatalf("no upstream login; stderr %q", stderr.String())
			}
			e.grants.Revoke(e.grant.ID)
			if announce {
				e.proxy.TerminateGrant(e.grant.ID, "revoked by carol")
			}
			released := time.Now()
			close(bc.release)
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Fatalf("session of the revoked grant still open 1s after its login; stdout %q", stdout.String())
			}
			t.Logf("ended %s after the login was released", time.Since(released))
			if strings.Contains(stdout.String(), "should-not-run") || cmd.ProcessState.ExitCode() == 0 {
				t.Fatalf("the revoked grant's command ran: code %d stdout %q stderr %q",
					cmd.ProcessState.ExitCode(), stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), "access revoked") {
				t.Errorf("stderr %q, want the revocation", stderr.String())
			}
			if n := len(e.proxy.Sessions()); n != 0 {
				t.Errorf("%d sessions still tracked", n)
			}
		})
	}
}
