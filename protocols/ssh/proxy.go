package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
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

// AuditEntry is one refusal or session lifecycle record for the audit log.
type AuditEntry struct {
	Actor   string
	Action  string
	Target  string
	Outcome string
	Reason  string
	// Details never holds a credential.
	Details map[string]any
}

// auditor appends to the broker's audit log.
type auditor interface {
	Audit(ctx context.Context, e AuditEntry) error
}

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
	// Recorder records sessions; see RecorderFunc. Required.
	Recorder recorder
	// Audit receives refusals and session starts and ends. Default: none
	// (they are only logged).
	Audit auditor
	// Log receives operational logs. Default: slog.Default().
	Log *slog.Logger
	// AuthTimeout bounds the handshake, authentication, the upstream dial
	// and the recording start, not counting a hold. Default: 30s.
	AuthTimeout time.Duration
	// KeepaliveInterval is how often both sides are probed; a side that
	// misses three probes is disconnected. Default: 15s; negative disables.
	KeepaliveInterval time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Defaults.
const (
	defaultAuthTimeout       = 30 * time.Second
	defaultKeepaliveInterval = 15 * time.Second
	// revokeGrace bounds how long a terminated session may take to show
	// its message before the connection is cut.
	revokeGrace = 500 * time.Millisecond
)

// Proxy is the SSH proxy. Build it with New, run it with Serve and stop it
// with Close.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	hostKey ssh.Signer

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{}
	sessions map[string]*session
	lns      map[net.Listener]struct{}
	wg       sync.WaitGroup
}

// ErrSessionNotFound is returned by Terminate for an unknown session.
var ErrSessionNotFound = errors.New("ssh proxy: session not found")

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("ssh proxy: closed")

// New checks the options, loads or creates the host key and returns a
// proxy ready to Serve.
func New(o Options) (*Proxy, error) {
	switch {
	case o.HostKeyFile == "":
		return nil, errors.New("ssh proxy: host key file is required")
	case o.Identities == nil, o.Grants == nil, o.Targets == nil, o.Credentials == nil, o.Recorder == nil:
		return nil, errors.New("ssh proxy: identities, grants, targets, credentials and recorder are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = defaultAuthTimeout
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
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Proxy{
		opts: o, log: o.Log.With("component", "ssh-proxy"), hostKey: hk,
		ctx: ctx, cancel: cancel,
		conns: map[net.Conn]struct{}{}, sessions: map[string]*session{}, lns: map[net.Listener]struct{}{},
	}, nil
}

// HostKey returns the broker's public host key.
func (p *Proxy) HostKey() ssh.PublicKey { return p.hostKey.PublicKey() }

// Serve accepts connections on ln until ctx ends or Close is called. It
// returns nil when stopped that way.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.lns[ln] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.lns, ln)
		p.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || p.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("ssh proxy: accept: %w", err)
		}
		backoff = 0
		if !p.trackConn(c) {
			c.Close()
			return nil
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrackConn(c)
			p.handleConn(c)
		}()
	}
}

// Close stops accepting, ends every live session with "broker shutting
// down" and waits for their final events.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for ln := range p.lns {
		ln.Close()
	}
	var live []*session
	for _, s := range p.sessions {
		live = append(live, s)
	}
	var pending []net.Conn
	for c := range p.conns {
		pending = append(pending, c)
	}
	p.mu.Unlock()
	for _, s := range live {
		s.terminate(endCause{state: "interrupted", by: "system", reason: "broker shutting down"})
	}
	p.cancel(errors.New("broker shutting down"))
	// Connections still authenticating have no session to message.
	time.AfterFunc(revokeGrace, func() {
		for _, c := range pending {
			c.Close()
		}
	})
	p.wg.Wait()
	return nil
}

// Terminate ends one live session: the user sees "access revoked: REASON"
// and the connection closes within a second.
func (p *Proxy) Terminate(sessionID, reason string) error {
	p.mu.Lock()
	s := p.sessions[sessionID]
	p.mu.Unlock()
	if s == nil {
		return ErrSessionNotFound
	}
	s.terminate(endCause{state: "terminated", by: "security", reason: reason})
	return nil
}

// TerminateGrant ends every live session on the grant, as Terminate does,
// and returns how many there were. Call it when the store announces that a
// grant ended.
func (p *Proxy) TerminateGrant(grantID, reason string) int {
	p.mu.Lock()
	var hit []*session
	for _, s := range p.sessions {
		if s.grant.ID == grantID {
			hit = append(hit, s)
		}
	}
	p.mu.Unlock()
	for _, s := range hit {
		s.terminate(endCause{state: "terminated", by: "system", reason: reason})
	}
	return len(hit)
}

// SessionInfo describes a live session.
type SessionInfo struct {
	ID         string
	GrantID    string
	User       string
	Target     string
	Role       string
	Login      string
	ClientAddr string
	StartedAt  time.Time
}

// Sessions lists the live sessions.
func (p *Proxy) Sessions() []SessionInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]SessionInfo, 0, len(p.sessions))
	for _, s := range p.sessions {
		out = append(out, s.info())
	}
	return out
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Proxy) trackConn(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrackConn(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) trackSession(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.sessions[s.id] = s
	return true
}

func (p *Proxy) untrackSession(s *session) {
	p.mu.Lock()
	delete(p.sessions, s.id)
	p.mu.Unlock()
}

// audit records an entry, logging when the audit log refuses it.
func (p *Proxy) audit(ctx context.Context, e AuditEntry) {
	if p.opts.Audit == nil {
		return
	}
	if ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.opts.Audit.Audit(actx, e); err != nil {
		p.log.Error("audit append failed", "action", e.Action, "err", err)
	}
}
