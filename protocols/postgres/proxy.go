package pgproxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// authenticator checks a connection token. The identity layer implements
// it with "db" tokens scoped to one target.
type authenticator interface {
	// AuthenticateDB returns the active grant that token (the password the
	// client sent) gives user on target. Its error text is the FATAL
	// message the client sees (SQLSTATE 28P01), so it must name the
	// problem (unknown or expired token, token of another user or target,
	// no active grant) and hold no secret.
	// role, when not empty, picks the grant for that role of the target
	// (the client's custos.role option); otherwise the grant ending last.
	AuthenticateDB(ctx context.Context, user, token, target, role string) (broker.Grant, error)
}

// credentials issues the upstream login for a session.
type credentials interface {
	// PostgresLogin returns a database user and password for g's role on
	// g's target, valid at least for the session. The issuer revokes them
	// when the grant (or, for per-session roles, the session) ends.
	PostgresLogin(ctx context.Context, g broker.Grant, sessionID string) (user, password string, err error)
	// EndLogin is called once a session that PostgresLogin served has
	// ended, or failed to start after the login was issued. A login issued
	// for that session alone (per-session roles) is revoked; a login shared
	// by the grant's sessions lives on until the grant ends.
	EndLogin(ctx context.Context, g broker.Grant, sessionID string) error
}

// targets finds a configured target by name; *config.Config implements it.
type targets interface {
	FindTarget(name string) (*config.Target, bool)
}

// auditSink receives the proxy's audit records: refused connections,
// session starts and ends, and recording failures on fail-open targets.
// *audit.Log implements it.
type auditSink interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// Options configure a Proxy. Auth, Credentials, Recorder and Targets are
// required.
type Options struct {
	Targets     targets
	Auth        authenticator
	Credentials credentials
	Recorder    recordingStarter
	// Audit receives audit records. Default: nil (refusals are only
	// logged).
	Audit auditSink
	// TLS is the broker's server certificate configuration. Default: nil,
	// which New refuses unless AllowPlaintext is set.
	TLS *tls.Config
	// AllowPlaintext lets clients connect without TLS (tokens then cross
	// the network in clear). Default: false (TLS required).
	AllowPlaintext bool
	// Logger receives JSON logs. Default: slog.Default().
	Logger *slog.Logger
	// MaxMessageSize bounds every client message and every server message
	// the proxy decodes. Default: 8 MiB.
	MaxMessageSize int
	// LoginTimeout bounds the startup phase: TLS, authentication, upstream
	// login and recording start. Default: 30s.
	LoginTimeout time.Duration
	// ParamHashKey keys the HMAC of the "hash" parameter policy. Default:
	// a random key per process, so hashes compare within one broker run.
	ParamHashKey []byte
}

// Defaults for zero Options fields.
const (
	defaultMaxMessage   = 8 << 20
	defaultLoginTimeout = 30 * time.Second
	// maxServerMessage bounds streamed server messages: PostgreSQL's own
	// allocation limit.
	maxServerMessage = 1<<30 - 1
	// closeGrace bounds writing the final error to a client that is not
	// reading.
	closeGrace = 500 * time.Millisecond
	// endLoginTimeout bounds handing a session's login back to the issuer.
	endLoginTimeout = 10 * time.Second
)

// Proxy is the PostgreSQL proxy. It is safe for concurrent use.
type Proxy struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // connections still in the startup phase
	sessions  map[string]*session
	byPID     map[uint32]*session
	wg        sync.WaitGroup
}

// New checks opts and returns a proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Targets == nil || opts.Auth == nil || opts.Credentials == nil || opts.Recorder == nil {
		return nil, errors.New("postgres proxy: targets, auth, credentials and recorder are required")
	}
	if opts.TLS == nil && !opts.AllowPlaintext {
		return nil, errors.New("postgres proxy: TLS is required: configure listen.tls_cert and listen.tls_key")
	}
	if opts.TLS != nil {
		c := opts.TLS.Clone()
		if c.MinVersion < tls.VersionTLS12 {
			c.MinVersion = tls.VersionTLS12
		}
		c.NextProtos = []string{alpnPostgres}
		opts.TLS = c
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = defaultMaxMessage
	}
	if opts.LoginTimeout <= 0 {
		opts.LoginTimeout = defaultLoginTimeout
	}
	if len(opts.ParamHashKey) == 0 {
		opts.ParamHashKey = make([]byte, 32)
		if _, err := rand.Read(opts.ParamHashKey); err != nil {
			return nil, fmt.Errorf("postgres proxy: hash key: %w", err)
		}
	}
	return &Proxy{
		opts:      opts,
		log:       opts.Logger.With("component", "postgres-proxy"),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		sessions:  make(map[string]*session),
		byPID:     make(map[uint32]*session),
	}, nil
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("postgres proxy: closed")

// Serve accepts connections on l until Close is called or ctx ends, then
// returns ErrClosed (or ctx's error). It closes l.
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	p.listeners[l] = struct{}{}
	p.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, l)
		p.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if p.isClosed() || errors.Is(err, net.ErrClosed) {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("postgres proxy: accept: %w", err)
		}
		delay = 0
		if !p.trackConn(conn) {
			conn.Close()
			return ErrClosed
		}
		p.wg.Go(func() {
			defer p.untrackConn(conn)
			p.handle(ctx, conn)
		})
	}
}

// Close stops every listener, ends every live session with FATAL
// "access revoked: broker shutting down" and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for l := range p.listeners {
		l.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	live := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		live = append(live, s)
	}
	p.mu.Unlock()
	for _, s := range live {
		s.terminate(shutdownCause())
	}
	p.wg.Wait()
	return nil
}

func shutdownCause() error {
	return &clientError{Code: codeAdminShutdown, Msg: "access revoked: broker shutting down"}
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

// register adds a logged-in session and gives it a cancel key pair of its
// own. It fails when the proxy is closing.
func (p *Proxy) register(s *session) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return shutdownCause()
	}
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("postgres proxy: cancel key: %w", err)
		}
		pid := binary.BigEndian.Uint32(b[:4]) &^ (1 << 31)
		if _, taken := p.byPID[pid]; pid == 0 || taken {
			continue
		}
		s.keyPID, s.keySecret = pid, append([]byte(nil), b[4:]...)
		break
	}
	p.sessions[s.id] = s
	p.byPID[s.keyPID] = s
	return nil
}

func (p *Proxy) unregister(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[s.id] == s {
		delete(p.sessions, s.id)
	}
	if p.byPID[s.keyPID] == s {
		delete(p.byPID, s.keyPID)
	}
}

// revokedCause is the cause a session ends with on revocation.
func revokedCause(reason string) error {
	if reason == "" {
		reason = "grant ended"
	}
	return &clientError{Code: codeAdminShutdown, Msg: "access revoked: " + reason}
}

// Terminate ends one live session: the client receives FATAL "access
// revoked: <reason>" (SQLSTATE 57P01) and is disconnected. Once it
// returns, nothing more of the session is relayed (it waits up to 2s for
// that). It reports whether the session was live.
func (p *Proxy) Terminate(sessionID, reason string) bool {
	p.mu.Lock()
	s := p.sessions[sessionID]
	p.mu.Unlock()
	if s == nil {
		return false
	}
	s.terminate(revokedCause(reason))
	s.waitStopped()
	return true
}

// TerminateGrant ends every live session of a grant, like Terminate, and
// returns how many it ended.
func (p *Proxy) TerminateGrant(grantID, reason string) int {
	p.mu.Lock()
	var live []*session
	for _, s := range p.sessions {
		if s.grant.ID == grantID {
			live = append(live, s)
		}
	}
	p.mu.Unlock()
	for _, s := range live {
		s.terminate(revokedCause(reason))
	}
	for _, s := range live {
		s.waitStopped()
	}
	return len(live)
}

// WatchGrants terminates the sessions of every grant announced as revoked
// or expired on events (broker.Store.GrantEvents) until it closes.
func (p *Proxy) WatchGrants(events <-chan broker.GrantEvent) {
	for ev := range events {
		switch ev.State {
		case broker.GrantRevoked:
			reason := ev.Reason
			if reason == "" {
				reason = "grant revoked"
			}
			p.TerminateGrant(ev.GrantID, reason)
		case broker.GrantExpired:
			p.TerminateGrant(ev.GrantID, "grant expired")
		}
	}
}

// SessionInfo describes a live session.
type SessionInfo struct {
	ID         string
	GrantID    string
	User       string
	Target     string
	Database   string
	ClientAddr string
	StartedAt  time.Time
}

// Sessions lists the live sessions.
func (p *Proxy) Sessions() []SessionInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]SessionInfo, 0, len(p.sessions))
	for _, s := range p.sessions {
		out = append(out, SessionInfo{ID: s.id, GrantID: s.grant.ID, User: s.grant.User, Target: s.grant.Target,
			Database: s.database, ClientAddr: s.clientAddr, StartedAt: s.started})
	}
	return out
}

// lookupCancel finds the session a CancelRequest's key pair belongs to.
func (p *Proxy) lookupCancel(k cancelKey) *session {
	p.mu.Lock()
	s := p.byPID[k.PID]
	p.mu.Unlock()
	if s == nil || subtle.ConstantTimeCompare(s.keySecret, k.Secret) != 1 {
		return nil
	}
	return s
}
