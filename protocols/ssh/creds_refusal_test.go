package sshproxy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
)

// failingCreds cannot issue a certificate, as when Vault is unreachable.
type failingCreds struct{}

func (failingCreds) SSHSigner(context.Context, broker.Grant, string) (ssh.Signer, error) {
	return nil, errors.New("vault: write ssh/sign/ops: credentials unavailable: vault unreachable (connection refused)")
}

// Without a certificate the session is refused with a short message naming
// the credentials; the Vault path and the grant stay in the log.
func TestCredentialsUnavailableRefusal(t *testing.T) {
	e := newEnvOptions(t, nil, func(o *Options) { o.Credentials = failingCreds{} })
	r := e.ssh(testTarget, "echo should-not-run")
	if r.code != 255 || strings.Contains(r.stdout, "should-not-run") ||
		!strings.Contains(r.stderr, "custos: cannot connect to "+testTarget+": credentials unavailable; try again later") {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, "ssh/sign") {
		t.Fatalf("the refusal shows Vault internals: %q", r.stderr)
	}
}
