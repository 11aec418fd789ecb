package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/clock"
	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/protocols/proxyproto"
)

// Grants looks grants up by ID; the access service implements it.
type Grants interface {
	// GetGrant returns the grant in whatever state it is, or an error when
	// there is no such grant.
	GetGrant(ctx context.Context, id string) (broker.Grant, error)
}

// Auditor appends to the audit log; *audit.Log implements it.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// Options are what both proxies' options share; each proxy embeds them.
// Recorder is required.
type Options struct {
	// Recorder starts session recordings.
	Recorder Recorder
	// Audit receives refusals and session records; *audit.Log implements
	// it. Default: none (they are only logged).
	Audit Auditor
	// Logger receives operational logs. Default: slog.Default().
	Logger *slog.Logger
	// LoginTimeout bounds a connection's way to a running session: the
	// handshake, authentication, the upstream login and the recording
	// start, not counting a hold for approval. Default: 30s.
	LoginTimeout time.Duration
	// Rejections audits the refusals of clients that never proved who
	// they are (Refusal.Anonymous), which anyone who can reach the proxy
	// can provoke at will: a few records per source address and window,
	// the rest counted in a summary. *audit.Throttle implements it.
	// Default: none (each is a record of its own in Audit).
	Rejections Rejections
	// SessionSweep is how often every live session's grant is re-checked
	// by its ID against the store, so a revocation whose event was missed
	// (another broker's, while the store's listening connection was down)
	// ends its sessions within this interval. Default: 5s.
	SessionSweep time.Duration
	// Metrics counts running sessions and relayed bytes. Default: none.
	Metrics *metrics.Metrics
	// ProxyProtocol reads the PROXY protocol header of connections from
	// trusted load balancers, whose client address then stands for the
	// connection's (client_addr, refusal throttling); connections it
	// refuses are closed and audited as anonymous refusals. Default: nil,
	// no header is read.
	ProxyProtocol *proxyproto.Policy
	// Clock tells when a grant is over: the earlier of its wall-clock end
	// and its real length (see broker/clock). Share the broker's one
	// Clock. Default: a Clock of this Core's own on the system clocks.
	Clock *clock.Clock
}

// Rejections bounds the audit records of refusals; *audit.Throttle
// implements it.
type Rejections interface {
	// Record audits a refusal from source (a client address without
	// port), appending it or counting it toward a summary.
	Record(ctx context.Context, source string, e audit.Entry) error
}

// Config configures a Core. Handle, Grants and Recorder are required.
type Config struct {
	// Protocol names the proxy's wire ("ssh", "postgres") in recording
	// headers, audit records, logs and errors.
	Protocol string
	// Handle serves one accepted connection, which is closed when it
	// returns.
	Handle func(conn net.Conn)
	// Grants re-checks a session's grant at admission.
	Grants Grants
	Options
}

// Defaults and bounds.
const (
	defaultLoginTimeout = 30 * time.Second
	// DefaultSessionSweep is Options.SessionSweep's default.
	DefaultSessionSweep = 5 * time.Second
	// closeGrace is how long Close lets connections that have no session
	// yet (authenticating, logging in) finish before cutting them.
	closeGrace = 500 * time.Millisecond
	// stopWait bounds how long Terminate, TerminateGrant and Close wait
	// for an ended session to stop relaying.
	stopWait = 2 * time.Second
	// auditTimeout bounds one audit append.
	auditTimeout = 5 * time.Second
)

// ErrSessionNotFound is returned by Terminate for an unknown session.
var ErrSessionNotFound = errors.New("session not found")

// ErrClosed is returned by Serve and Open once the Core is closed.
var ErrClosed = errors.New("proxy closed")

// Core accepts a proxy's connections and tracks its sessions. A proxy
// embeds it, so Serve, Close, Terminate, TerminateGrant, WatchGrants,
// Resync, Recheck and Sessions are the same for every protocol.
type Core struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	closed   bool
	lns      map[net.Listener]struct{}
	conns    map[net.Conn]struct{}
	sessions map[string]*Session
	wg       sync.WaitGroup
	// resync asks the sweep for a re-check at once.
	resync chan struct{}
}

// New checks cfg and returns a Core ready to Serve.
func New(cfg Config) (*Core, error) {
	if cfg.Handle == nil || cfg.Grants == nil || cfg.Recorder == nil {
		return nil, fmt.Errorf("%s proxy: handler, grants and recorder are required", cfg.Protocol)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = defaultLoginTimeout
	}
	if cfg.SessionSweep <= 0 {
		cfg.SessionSweep = DefaultSessionSweep
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New(clock.Options{})
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &Core{cfg: cfg, log: cfg.Logger.With("component", cfg.Protocol+"-proxy"), ctx: ctx, cancel: cancel,
		lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}, sessions: map[string]*Session{},
		resync: make(chan struct{}, 1)}
	c.wg.Go(c.sweep)
	return c, nil
}

// Clock is the clock the Core ends grants by.
func (c *Core) Clock() *clock.Clock { return c.cfg.Clock }

// Context ends when the Core closes; its cause is the Shutdown *Cause.
func (c *Core) Context() context.Context { return c.ctx }

// LoginTimeout is the configured login timeout.
func (c *Core) LoginTimeout() time.Duration { return c.cfg.LoginTimeout }

// Log is the proxy's logger.
func (c *Core) Log() *slog.Logger { return c.log }

// Serve accepts connections on ln until ctx ends or Close is called, and
// returns nil when stopped that way. Temporary accept errors are retried
// with a growing pause. It closes ln.
func (c *Core) Serve(ctx context.Context, ln net.Listener) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		ln.Close()
		return fmt.Errorf("%s proxy: %w", c.cfg.Protocol, ErrClosed)
	}
	c.lns[ln] = struct{}{}
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		c.mu.Lock()
		delete(c.lns, ln)
		c.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || c.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("%s proxy: accept: %w", c.cfg.Protocol, err)
		}
		backoff = 0
		if !c.trackConn(conn) {
			conn.Close()
			return nil
		}
		c.wg.Go(func() {
			defer c.untrackConn(conn)
			c.handle(conn)
		})
	}
}

// Close stops accepting, ends every session with the Shutdown cause, cuts
// connections that have no session after a short grace and waits until
// every connection is handled.
func (c *Core) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for ln := range c.lns {
		ln.Close()
	}
	live := c.liveLocked(func(*Session) bool { return true })
	c.mu.Unlock()
	cause := &Cause{Kind: Shutdown, By: "system", Reason: "broker shutting down"}
	for _, s := range live {
		s.terminate(cause)
	}
	c.cancel(cause)
	t := time.AfterFunc(closeGrace, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for conn := range c.conns {
			conn.Close()
		}
	})
	defer t.Stop()
	c.wg.Wait()
	return nil
}

// Terminate ends one session: the user sees "access revoked: REASON".
// Once it returns nothing more of the session is relayed (it waits up to
// 2s for that).
func (c *Core) Terminate(sessionID, reason string) error {
	c.mu.Lock()
	s := c.sessions[sessionID]
	c.mu.Unlock()
	if s == nil {
		return ErrSessionNotFound
	}
	s.terminate(&Cause{Kind: Revoked, By: "security", Reason: reason})
	s.waitStopped()
	return nil
}

// TerminateGrant ends every session of a grant, including those still
// logging in upstream, as Terminate does, and returns how many there were.
func (c *Core) TerminateGrant(grantID, reason string) int {
	c.mu.Lock()
	hit := c.liveLocked(func(s *Session) bool { return s.Grant.ID == grantID })
	c.mu.Unlock()
	for _, s := range hit {
		s.terminate(&Cause{Kind: Revoked, By: "system", Reason: reason})
	}
	for _, s := range hit {
		s.waitStopped()
	}
	return len(hit)
}

// WatchGrants ends the sessions of every grant announced as revoked or
// expired on events (broker.Store.GrantEvents) until it closes, and
// re-arms the end of those of a grant announced active again (extended;
// RearmGrant). A resync
// event (events may have been missed) re-checks every live session's
// grant at once (Resync).
func (c *Core) WatchGrants(events <-chan broker.GrantEvent) {
	for ev := range events {
		if ev.Resync {
			c.Resync()
			continue
		}
		if reason, ended := GrantEndReason(ev); ended {
			c.TerminateGrant(ev.GrantID, reason)
			continue
		}
		if ev.State == broker.GrantActive && ev.GrantID != "" {
			c.RearmGrant(c.ctx, ev.GrantID)
		}
	}
}

// RearmGrant looks grant id up and moves the grant-end timer of each of
// its live sessions to the grant's end when that is later (an approved
// extension), so they run on past the old end. It returns how many
// sessions it moved.
func (c *Core) RearmGrant(ctx context.Context, id string) int {
	c.mu.Lock()
	live := c.liveLocked(func(s *Session) bool { return s.Grant.ID == id })
	c.mu.Unlock()
	if len(live) == 0 {
		return 0
	}
	lctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	g, err := c.cfg.Grants.GetGrant(lctx, id)
	cancel()
	if err != nil {
		c.log.Warn("grant lookup after a change failed; the next re-check retries", "grant", id, "err", err)
		return 0
	}
	if g.State != broker.GrantActive {
		return 0
	}
	return c.extendSessions(live, g)
}

// extendSessions moves the sessions' ends to g's end where it is later.
func (c *Core) extendSessions(live []*Session, g broker.Grant) int {
	n := 0
	for _, s := range live {
		if s.extendGrantEnd(g) {
			n++
		}
	}
	if n > 0 {
		c.log.Info("grant extended; its live sessions run on", "grant", g.ID, "sessions", n, "ends_at", g.EffectiveEnd().UTC())
	}
	return n
}

// GrantEndReason is what a user sees after "access revoked: " when ev
// ends a grant's sessions; ended is false for an event that does not,
// including a resync event (it names no grant).
func GrantEndReason(ev broker.GrantEvent) (reason string, ended bool) {
	switch {
	case ev.Resync || ev.GrantID == "":
		return "", false
	case ev.State == broker.GrantActive:
		return "", false
	case ev.State == broker.GrantExpired:
		return "grant expired", true
	case ev.Reason != "":
		return ev.Reason, true
	default:
		return "grant " + string(ev.State), true
	}
}

// Info describes a tracked session.
type Info struct {
	ID       string
	GrantID  string
	User     string
	Target   string
	Role     string
	Protocol string
	// Account is the target login or database user; empty until the
	// upstream login is issued.
	Account    string
	Database   string
	ClientAddr string
	StartedAt  time.Time
}

// Sessions lists the tracked sessions, including those still being
// admitted.
func (c *Core) Sessions() []Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Info, 0, len(c.sessions))
	for _, s := range c.sessions {
		out = append(out, s.Info())
	}
	return out
}

func (c *Core) liveLocked(match func(*Session) bool) []*Session {
	var out []*Session
	for _, s := range c.sessions {
		if match(s) {
			out = append(out, s)
		}
	}
	return out
}

func (c *Core) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *Core) trackConn(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.conns[conn] = struct{}{}
	return true
}

func (c *Core) untrackConn(conn net.Conn) {
	c.mu.Lock()
	delete(c.conns, conn)
	c.mu.Unlock()
	conn.Close()
}

// audit appends an entry, logging when the audit log refuses it. It runs
// after the caller's context ended too.
func (c *Core) audit(ctx context.Context, e audit.Entry) {
	if c.cfg.Audit == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if _, err := c.cfg.Audit.Append(actx, e); err != nil {
		c.log.Error("audit append failed", "action", e.Action, "err", err)
	}
}

// Audit actions of a session's life.
const (
	ActionStart     = "session.start"
	ActionEnd       = "session.end"
	ActionRefused   = "session.refused"
	ActionTerminate = "session.terminate"
	ActionFailOpen  = "session.record_fail_open"
)
