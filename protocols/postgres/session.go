package pgproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/event"
)

// session is one logged-in client connection relayed to the target.
type session struct {
	p          *Proxy
	id         string
	grant      broker.Grant
	database   string
	account    string
	clientAddr string
	started    time.Time
	red        redactor
	// idle is the role's idle timeout; 0 means none.
	idle time.Duration

	client   net.Conn
	upstream net.Conn
	// upstreamAddr, upstreamPID and upstreamSecret cancel the target's
	// running query.
	upstreamAddr   string
	upstreamPID    uint32
	upstreamSecret []byte
	// keyPID and keySecret are the key pair the client got from the broker.
	keyPID    uint32
	keySecret []byte

	// results is the target's result-recording policy.
	results struct {
		on          bool
		rows, bytes int
	}

	ctx    context.Context
	cancel context.CancelCauseFunc
	// stopped is closed once neither copier relays anything more.
	stopped chan struct{}
	rec     *sessionRecorder
	// busy is true while the target may be running a query (between a
	// Query, FunctionCall or Sync and the next ReadyForQuery).
	busy atomic.Bool
}

// terminate ends the session with cause; the first cause wins.
func (s *session) terminate(cause error) { s.cancel(cause) }

// stopWait is how long Terminate, TerminateGrant and Close wait for a
// session's relay to stop.
const stopWait = 2 * time.Second

// waitStopped waits until the session relays nothing more (both copiers
// stopped), or stopWait passed.
func (s *session) waitStopped() {
	t := time.NewTimer(stopWait)
	defer t.Stop()
	select {
	case <-s.stopped:
	case <-t.C:
	}
}

// handle runs one client connection from accept to close.
func (p *Proxy) handle(ctx context.Context, conn net.Conn) {
	start := time.Now()
	conn.SetDeadline(start.Add(p.opts.LoginTimeout))
	n, err := negotiate(direct(conn), p.opts.TLS)
	if n.conn != conn {
		defer n.conn.Close()
	}
	if err != nil {
		p.refuseEarly(n.conn, err)
		return
	}
	if n.cancel != nil {
		p.forwardCancel(*n.cancel)
		return
	}
	s, ref := p.login(ctx, n)
	if ref != nil {
		p.refuseLogin(ctx, n, ref)
		return
	}
	p.mu.Lock()
	delete(p.conns, conn) // the session owns it now; Close terminates it
	p.mu.Unlock()
	s.run()
}

// refuseEarly answers a failed startup phase: a FATAL for client-visible
// errors, a log line for the rest (port scanners, TLS failures).
func (p *Proxy) refuseEarly(conn net.Conn, err error) {
	if ce, ok := asClientError(err); ok {
		conn.SetWriteDeadline(time.Now().Add(closeGrace))
		conn.Write(appendFatal(nil, ce))
		p.log.Info("postgres connection refused", "client", conn.RemoteAddr().String(), "code", ce.Code, "reason", ce.Msg)
		return
	}
	if !errors.Is(err, io.EOF) {
		p.log.Debug("postgres startup failed", "client", conn.RemoteAddr().String(), "err", err)
	}
}

// refuseLogin sends the refusal, logs and audits it.
func (p *Proxy) refuseLogin(ctx context.Context, n *negotiated, ref *refusal) {
	conn := n.conn
	conn.SetWriteDeadline(time.Now().Add(closeGrace))
	conn.Write(appendFatal(nil, ref.clientError))
	var user, target, db string
	if n.startup != nil {
		user = n.startup.get("user")
		target, db = parseDBName(n.startup.get("database"))
		if target == "" {
			target = user
		}
	}
	attrs := []any{"client", conn.RemoteAddr().String(), "user", user, "target", target, "code", ref.Code, "reason", ref.Msg}
	if ref.err != nil {
		attrs = append(attrs, "err", ref.err)
	}
	p.log.Warn("postgres connection refused", attrs...)
	details := map[string]any{"client_addr": conn.RemoteAddr().String(), "sqlstate": ref.Code}
	if db != "" {
		details["database"] = db
	}
	if ref.grantID != "" {
		details["grant_id"] = ref.grantID
	}
	outcome := broker.OutcomeDenied
	if ref.Code == codeConnectionFailure || ref.Code == codeCannotConnectNow {
		outcome = broker.OutcomeError
	}
	if user == "" {
		user = "unknown"
	}
	p.audit(ctx, "postgres.connect", user, target, outcome, ref.Msg, details)
}

// audit appends an audit record; failures are logged.
func (p *Proxy) audit(ctx context.Context, action, actor, target, outcome, reason string, details map[string]any) {
	if p.opts.Audit == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := p.opts.Audit.Append(actx, audit.Entry{Actor: actor, Action: action, Target: target,
		Outcome: outcome, Reason: reason, Details: details})
	if err != nil {
		p.log.Error("postgres audit failed", "action", action, "err", err)
	}
}

// login authenticates the client, logs in upstream, starts the recording
// and registers the session. Nothing of the client's reaches the target
// before it returns.
func (p *Proxy) login(ctx context.Context, n *negotiated) (*session, *refusal) {
	req, ref := p.checkStartup(n)
	if ref != nil {
		return nil, ref
	}
	token, err := readToken(n.conn, n.startup)
	if err != nil {
		if ce, ok := asClientError(err); ok {
			return nil, refuse(ce)
		}
		return nil, refuse(&clientError{Code: codeProtocolViolation, Msg: "custos: no password received", err: err})
	}
	lctx, cancel := context.WithTimeout(ctx, p.opts.LoginTimeout)
	defer cancel()
	g, t, db, ref := p.authorize(lctx, req, token)
	if ref != nil {
		return nil, ref
	}
	sctx, scancel := context.WithCancelCause(ctx)
	s := &session{
		p: p, id: broker.NewID("ses"), grant: g, database: db, clientAddr: req.clientAddr,
		started: time.Now(), client: n.conn, ctx: sctx, cancel: scancel, stopped: make(chan struct{}),
		red: redactor{policy: t.Postgres.Parameters, key: p.opts.ParamHashKey},
	}
	s.results.on, s.results.rows, s.results.bytes = t.Postgres.RecordResults, t.Postgres.ResultRowsCap, t.Postgres.ResultBytesCap
	if r, ok := t.FindRole(g.Role); ok {
		s.idle = time.Duration(r.IdleTimeout)
	}
	if s.red.policy == "" {
		s.red.policy = paramsRecord
	}
	// fail refuses the login; a database login already issued for the
	// session is given back.
	fail := func(r *refusal) (*session, *refusal) {
		if s.account != "" {
			s.endLogin()
		}
		scancel(r)
		r.grantID = g.ID
		return nil, r
	}
	user, password, err := p.opts.Credentials.PostgresLogin(lctx, g, s.id)
	if err != nil {
		return fail(refuse(&clientError{Code: codeCannotConnectNow,
			Msg: "custos: credentials unavailable for target " + g.Target, err: err}))
	}
	s.account = user
	hc, err := dialUpstream(lctx, t, db, user, password, upstreamParams(req))
	if err != nil {
		return fail(refuse(upstreamRefusal(g.Target, err)))
	}
	s.upstream = hc.Conn
	s.upstreamAddr = hc.Conn.RemoteAddr().String()
	s.upstreamPID, s.upstreamSecret = hc.PID, hc.SecretKey
	closeUp := func() { s.upstream.Write([]byte{'X', 0, 0, 0, 4}); s.upstream.Close() }

	rec, err := p.opts.Recorder.Start(lctx, s.header(t, user))
	if err != nil {
		if !t.Recording.FailOpen {
			closeUp()
			return fail(refuse(&clientError{Code: codeCannotConnectNow,
				Msg: "custos: session recording unavailable; connection refused (fail-closed)", err: err}))
		}
		p.log.Error("postgres recording failed to start; continuing (fail-open target)", "session", s.id, "err", err)
		p.audit(ctx, "postgres.recording_failed_open", g.User, g.Target, broker.OutcomeError,
			"recording failed to start", map[string]any{"session_id": s.id})
		rec = nopRecording{}
	}
	s.rec = &sessionRecorder{rec: rec}
	if err := p.register(s); err != nil {
		closeUp()
		rec.Terminate("broker", "broker shutting down")
		ce, _ := asClientError(err)
		if ce == nil {
			ce = &clientError{Code: codeCannotConnectNow, Msg: "custos: the broker is shutting down", err: err}
		}
		return fail(refuse(ce))
	}
	n.conn.SetDeadline(time.Time{})
	if _, err := n.conn.Write(welcome(hc, s.keyPID, s.keySecret)); err != nil {
		s.cancel(err)
	}
	return s, nil
}

// endLogin hands the session's database login back to the issuer, which
// revokes it when it was issued for this session alone.
func (s *session) endLogin() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), endLoginTimeout)
	defer cancel()
	if err := s.p.opts.Credentials.EndLogin(ctx, s.grant, s.id); err != nil {
		s.p.log.Warn("postgres session login not ended", "session", s.id, "err", err)
	}
}

// forwardCancel handles a CancelRequest: when the key pair belongs to a
// live session, the target is asked to cancel that session's query.
// Unknown keys are ignored silently, as PostgreSQL does.
func (p *Proxy) forwardCancel(k cancelKey) {
	s := p.lookupCancel(k)
	if s == nil {
		p.log.Info("postgres cancel request with unknown key")
		return
	}
	s.rec.record(event.Event{Kind: event.KindNote, Op: "cancel", Text: "client sent a cancel request"})
	if err := s.cancelUpstream(); err != nil {
		p.log.Warn("postgres cancel forward failed", "session", s.id, "err", err)
	}
}

// cancelUpstream sends the target a CancelRequest for the session's
// backend and waits for the target to close that connection.
func (s *session) cancelUpstream() error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.upstreamAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := make([]byte, 12, 12+len(s.upstreamSecret))
	binary.BigEndian.PutUint32(msg, uint32(12+len(s.upstreamSecret)))
	binary.BigEndian.PutUint32(msg[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], s.upstreamPID)
	msg = append(msg, s.upstreamSecret...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}
