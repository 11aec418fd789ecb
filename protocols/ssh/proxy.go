package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
)

// identities maps a client's public key to the Custos user it is registered
// to. Certificates from the broker's user CA are checked by the proxy and
// only need UserEnabled.
type identities interface {
	// UserForKey returns the user the key is registered to.
	UserForKey(key ssh.PublicKey) (user string, ok bool)
	// UserEnabled reports whether the user exists and may sign in.
	UserEnabled(user string) bool
}

// grants answers whether a user may reach a target now.
type grants interface {
	// ActiveGrantAs returns the user's grant on target for role (any role
	// when "") that is active now, the one ending last, or an error when
	// there is none.
	ActiveGrantAs(ctx context.Context, user, target, role string) (broker.Grant, error)
	// GetGrant returns a grant by ID in whatever state it is; admission
	// re-checks the session's own grant with it.
	GetGrant(ctx context.Context, id string) (broker.Grant, error)
}

// targets looks up target configuration; *config.Config satisfies it.
type targets interface {
	FindTarget(name string) (*config.Target, bool)
}

// credentials issues the upstream login for one session.
type credentials interface {
	// SSHSigner returns a signer carrying a short-lived certificate for the
	// grant's role login on the grant's target.
	SSHSigner(ctx context.Context, g broker.Grant, sessionID string) (ssh.Signer, error)
}

// ErrSessionNotFound is returned by Terminate for an unknown session.
var ErrSessionNotFound = lifecycle.ErrSessionNotFound

// Options configure a Proxy. Interfaces marked required must be set.
type Options struct {
	// HostKeyFile is the broker's SSH host key (OpenSSH private key
	// format). It is generated on first start and reused afterwards.
	// Required.
	HostKeyFile string
	// UserCAKeys are the public keys of the broker's user CA: a user
	// certificate they signed authenticates the user named by its first
	// principal. Default: none (certificates are refused).
	UserCAKeys []ssh.PublicKey
	// Identities maps registered public keys to users. Required.
	Identities identities
	// Grants answers grant lookups. Required.
	Grants grants
	// Targets holds target configuration; pass the *config.Config.
	// Required.
	Targets targets
	// Credentials issues upstream certificates. Required.
	Credentials credentials
	// Options are the session core's: Recorder (required), Audit,
	// Logger, LoginTimeout.
	lifecycle.Options
	// KeepaliveInterval is how often both sides are probed; a side that
	// misses three probes is disconnected. Default: 15s; negative disables.
	KeepaliveInterval time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Defaults.
const (
	defaultKeepaliveInterval = 15 * time.Second
	// revokeGrace bounds how long a terminated session may take to show
	// its message before the connection is cut.
	revokeGrace = 500 * time.Millisecond
)

// Proxy is the SSH proxy. Build it with New, run it with Serve and stop it
// with Close; the embedded Core also terminates and lists sessions.
type Proxy struct {
	*lifecycle.Core
	opts    Options
	hostKey ssh.Signer
}

// New checks the options, loads or creates the host key and returns a
// proxy ready to Serve.
func New(o Options) (*Proxy, error) {
	switch {
	case o.HostKeyFile == "":
		return nil, errors.New("ssh proxy: host key file is required")
	case o.Identities == nil, o.Grants == nil, o.Targets == nil, o.Credentials == nil, o.Recorder == nil:
		return nil, errors.New("ssh proxy: identities, grants, targets, credentials and recorder are required")
	}
	if o.KeepaliveInterval == 0 {
		o.KeepaliveInterval = defaultKeepaliveInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	hk, err := LoadOrCreateHostKey(o.HostKeyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh proxy: %w", err)
	}
	p := &Proxy{opts: o, hostKey: hk}
	p.Core, err = lifecycle.New(lifecycle.Config{Protocol: "ssh", Handle: p.handleConn, Grants: o.Grants, Options: o.Options})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// HostKey returns the broker's public host key.
func (p *Proxy) HostKey() ssh.PublicKey { return p.hostKey.PublicKey() }
