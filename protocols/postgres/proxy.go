package pgproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/postgres/masking"
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

// grants looks grants up by ID; admission re-checks the session's own
// grant with it. The access service implements it.
type grants interface {
	GetGrant(ctx context.Context, id string) (broker.Grant, error)
}

// Options configure a Proxy. Targets, Auth, Grants, Credentials and
// Recorder are required.
type Options struct {
	Targets     targets
	Auth        authenticator
	Grants      grants
	Credentials credentials
	// Options are the session core's: Recorder (required), Audit,
	// Logger, LoginTimeout (bounds TLS, authentication, upstream login
	// and recording start).
	lifecycle.Options
	// TLS is the broker's server certificate configuration. Default: nil,
	// which New refuses unless AllowPlaintext is set.
	TLS *tls.Config
	// AllowPlaintext lets clients connect without TLS (tokens then cross
	// the network in clear). Default: false (TLS required).
	AllowPlaintext bool
	// MaxMessageSize bounds every client message and every server message
	// the proxy decodes. Default: 8 MiB.
	MaxMessageSize int
	// Holds decides statements a role's guardrails hold for approval.
	// Default: nil (held statements are refused).
	Holds holder
	// Alerts receives guardrail alerts. Default: nil (alerts are recorded
	// and audited only).
	Alerts alerter
	// ParamHashKey keys the HMAC of the "hash" parameter policy. Default:
	// a random key per process, so hashes compare within one broker run.
	ParamHashKey []byte
	// DataDictionary classifies result columns for roles with masking
	// rules. Default: nil, with which a session of a role with masking
	// rules is refused (never relayed unmasked).
	DataDictionary *masking.Dictionary
}

// Defaults for zero Options fields.
const (
	defaultMaxMessage = 8 << 20
	// maxServerMessage bounds streamed server messages: PostgreSQL's own
	// allocation limit.
	maxServerMessage = 1<<30 - 1
	// closeGrace bounds writing the final error to a client that is not
	// reading.
	closeGrace = 500 * time.Millisecond
	// endLoginTimeout bounds handing a session's login back to the issuer.
	endLoginTimeout = 10 * time.Second
	// cancelSecretLen is the length of the broker's cancel secret: the
	// 4 bytes protocol 3.0 clients expect.
	cancelSecretLen = 4
)

// Proxy is the PostgreSQL proxy. It is safe for concurrent use; the
// embedded Core serves, closes, terminates and lists sessions.
type Proxy struct {
	*lifecycle.Core
	opts Options

	// byPID holds the live sessions by their target backend's PID, the
	// first half of the cancel key the client got.
	mu    sync.Mutex
	byPID map[uint32][]*session
	// protected caches the tables with classified columns per target
	// and database (guard_protected.go).
	protected protectedCache
}

// New checks opts and returns a proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Targets == nil || opts.Auth == nil || opts.Grants == nil || opts.Credentials == nil || opts.Recorder == nil {
		return nil, errors.New("postgres proxy: targets, auth, grants, credentials and recorder are required")
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
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = defaultMaxMessage
	}
	if len(opts.ParamHashKey) == 0 {
		opts.ParamHashKey = make([]byte, 32)
		if _, err := rand.Read(opts.ParamHashKey); err != nil {
			return nil, fmt.Errorf("postgres proxy: hash key: %w", err)
		}
	}
	p := &Proxy{opts: opts, byPID: make(map[uint32][]*session)}
	var err error
	p.Core, err = lifecycle.New(lifecycle.Config{Protocol: "postgres", Handle: p.handle, Grants: opts.Grants, Options: opts.Options})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// registerCancelKey gives an admitted session its cancel key: the
// target's real backend PID, which the client sees in BackendKeyData (so
// pg_terminate_backend, pg_stat_activity and tools keyed on the PID agree
// with it), and a secret of the broker's own, so the client never learns
// the target's. Sessions on different targets may share a PID; the pair
// (PID, secret) is unique among live sessions.
func (p *Proxy) registerCancelKey(s *session) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	same := p.byPID[s.upstreamPID]
	for {
		secret := make([]byte, cancelSecretLen)
		if _, err := rand.Read(secret); err != nil {
			return fmt.Errorf("postgres proxy: cancel key: %w", err)
		}
		if slices.ContainsFunc(same, func(o *session) bool { return bytes.Equal(o.keySecret, secret) }) {
			continue
		}
		s.keySecret = secret
		p.byPID[s.upstreamPID] = append(same, s)
		return nil
	}
}

func (p *Proxy) unregisterCancelKey(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rest := slices.DeleteFunc(p.byPID[s.upstreamPID], func(o *session) bool { return o == s })
	if len(rest) == 0 {
		delete(p.byPID, s.upstreamPID)
		return
	}
	p.byPID[s.upstreamPID] = rest
}

// lookupCancel finds the session a CancelRequest's key pair belongs to:
// the PID alone is public (pg_stat_activity shows it), so the secret must
// match too.
func (p *Proxy) lookupCancel(k cancelKey) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var found *session
	for _, s := range p.byPID[k.PID] {
		if subtle.ConstantTimeCompare(s.keySecret, k.Secret) == 1 {
			found = s
		}
	}
	return found
}
