package pgproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/postgres/masking"
	"github.com/custos-pam/custos/recorder/event"
)

// session is one logged-in client connection relayed to the target; the
// embedded lifecycle session tracks, times and records it.
type session struct {
	*lifecycle.Session
	p   *Proxy
	red redactor

	client   net.Conn
	upstream net.Conn
	// upstreamAddr, upstreamPID and upstreamSecret cancel the target's
	// running query.
	upstreamAddr   string
	upstreamPID    uint32
	upstreamSecret []byte
	// keySecret is the broker's cancel secret for the session: the client
	// got (upstreamPID, keySecret) in BackendKeyData.
	keySecret []byte

	// results is the target's result-recording policy.
	results struct {
		on          bool
		rows, bytes int
	}

	// mask and cat are set for a role with masking rules.
	mask *masker
	cat  *catalog

	// busy is true while the target may be running a query (between a
	// Query, FunctionCall or Sync and the next ReadyForQuery).
	busy atomic.Bool

	// guard is the role's statement guardrails (guardrail.go); nil for
	// roles without them.
	guard *guardrail
}

// clientCause is the client-visible error for why a session ended: a
// protocol error the proxy answers, or an end the broker caused.
func clientCause(err error) (*clientError, bool) {
	if ce, ok := asClientError(err); ok {
		return ce, true
	}
	c, ok := lifecycle.AsCause(err)
	if !ok {
		return nil, false
	}
	switch c.Kind {
	case lifecycle.Idle:
		return &clientError{Code: codeIdleSessionTimeout,
			Msg: fmt.Sprintf("custos: session idle for %s; disconnected (role idle_timeout)", c.IdleFor)}, true
	case lifecycle.RecordingFailed:
		msg := "custos: session recording failed; session ended (fail-closed)"
		if why, ok := strings.CutPrefix(c.Reason, "recording failed: "); ok {
			msg = "custos: session recording failed (" + why + "); session ended (fail-closed)"
		}
		return &clientError{Code: codeAdminShutdown, Msg: msg, err: err}, true
	default:
		return &clientError{Code: codeAdminShutdown, Msg: "access revoked: " + c.Reason}, true
	}
}

// handle runs one client connection from accept to close.
func (p *Proxy) handle(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(p.LoginTimeout()))
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
	s, ref := p.login(n)
	if ref != nil {
		p.refuseLogin(n, ref)
		return
	}
	s.run()
}

// refuseEarly answers a failed startup phase: a FATAL for client-visible
// errors, a log line for the rest (port scanners, TLS failures).
func (p *Proxy) refuseEarly(conn net.Conn, err error) {
	if ce, ok := asClientError(err); ok {
		conn.SetWriteDeadline(time.Now().Add(closeGrace))
		conn.Write(appendFatal(nil, ce))
		p.Log().Info("postgres connection refused", "client", conn.RemoteAddr().String(), "code", ce.Code, "reason", ce.Msg)
		return
	}
	if !errors.Is(err, io.EOF) {
		p.Log().Debug("postgres startup failed", "client", conn.RemoteAddr().String(), "err", err)
	}
}

// refuseLogin sends the refusal, logs and audits it.
func (p *Proxy) refuseLogin(n *negotiated, ref *refusal) {
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
	if ref.err != nil && ref.grantID != "" {
		p.Log().Warn("postgres connection refused", "client", conn.RemoteAddr().String(), "code", ref.Code, "err", ref.err)
	}
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
	if ref.session != nil {
		ref.session.Refuse(outcome, ref.Msg, details)
		return
	}
	// Without a grant the client never presented a valid token: its user
	// name, database and target are only what it claimed.
	p.Refused(context.Background(), lifecycle.Refusal{User: user, Target: target, Outcome: outcome, Reason: ref.Msg,
		Details: details, Anonymous: ref.grantID == ""})
}

// login authenticates the client, logs in upstream, starts the recording
// and admits the session. Nothing of the client's reaches the target
// before it returns.
func (p *Proxy) login(n *negotiated) (*session, *refusal) {
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
	actx, cancel := context.WithTimeout(p.Context(), p.LoginTimeout())
	defer cancel()
	g, t, db, ref := p.authorize(actx, req, token)
	if ref != nil {
		return nil, ref
	}
	var role *config.Role
	if r, ok := t.FindRole(g.Role); ok {
		role = r
	}
	policy, mask, ref := p.maskingPolicy(g, t, role)
	if ref != nil {
		return nil, ref
	}
	cs, err := p.Open(lifecycle.Start{Grant: g, Target: t, Role: role, Database: db, ClientAddr: req.clientAddr,
		StartDetails: mask.auditDetails()})
	if err != nil {
		return nil, &refusal{grantID: g.ID, clientError: &clientError{Code: codeCannotConnectNow, Msg: "custos: the broker is shutting down", err: err}}
	}
	s := &session{Session: cs, p: p, client: n.conn, red: redactor{policy: t.Postgres.Parameters, key: p.opts.ParamHashKey}}
	s.results.on, s.results.rows, s.results.bytes = t.Postgres.RecordResults, t.Postgres.ResultRowsCap, t.Postgres.ResultBytesCap
	if policy != nil && role.ResultSample > 0 && (!s.results.on || role.ResultSample < s.results.rows || s.results.rows <= 0) {
		// A masked sample: the observer sees the rows after masking.
		s.results.on, s.results.rows = true, role.ResultSample
	}
	if s.red.policy == "" {
		s.red.policy = paramsRecord
	}
	// The session is tracked: a revocation from here on ends its context,
	// and with it the upstream login.
	lctx, lcancel := context.WithTimeout(s.Context(), p.LoginTimeout())
	defer lcancel()
	// fail refuses the login with the broker's cause when there is one;
	// a database login already issued for the session is given back.
	fail := func(ce *clientError) (*session, *refusal) {
		if bc, ok := clientCause(cs.Cause()); ok {
			ce = bc
		}
		if s.Account != "" {
			s.endLogin()
		}
		return nil, &refusal{grantID: g.ID, clientError: ce, session: cs}
	}
	user, password, err := p.opts.Credentials.PostgresLogin(lctx, g, s.ID)
	if err != nil {
		return fail(&clientError{Code: codeCannotConnectNow, Msg: "custos: credentials unavailable for target " + g.Target, err: err})
	}
	cs.SetAccount(user)
	hc, err := dialUpstream(lctx, t, db, user, password, upstreamParams(req))
	if err != nil {
		return fail(upstreamRefusal(g.Target, err))
	}
	s.upstream = hc.Conn
	if policy != nil {
		s.mask = mask
		s.cat = &catalog{cols: map[colKey]*masking.Column{}, looked: map[uint32]bool{},
			connect: func(ctx context.Context) (*pgconn.PgConn, error) {
				// None of the client's parameters: they cannot shape
				// the lookups.
				cfg, err := upstreamConfig(t, db, user, password, map[string]string{"application_name": "custos masking catalog"})
				if err != nil {
					return nil, err
				}
				return pgconn.ConnectConfig(ctx, cfg)
			}}
	}
	s.setupGuardrails(t, role, db, user, password, upstreamParams(req))
	s.upstreamAddr = hc.Conn.RemoteAddr().String()
	s.upstreamPID, s.upstreamSecret = hc.PID, hc.SecretKey
	closeUp := func() { s.upstream.Write([]byte{'X', 0, 0, 0, 4}); s.upstream.Close() }
	if err := cs.StartRecording(lctx); err != nil {
		closeUp()
		return fail(&clientError{Code: codeCannotConnectNow,
			Msg: "custos: session recording unavailable; connection refused (fail-closed)", err: err})
	}
	// The cancel key comes first: once Admit audits session.start, the
	// session runs and ends with session.end.
	if err := p.registerCancelKey(s); err != nil {
		closeUp()
		cs.End(err)
		return fail(&clientError{Code: codeCannotConnectNow, Msg: "custos: cannot start the session", err: err})
	}
	if err := cs.Admit(); err != nil {
		p.unregisterCancelKey(s)
		closeUp()
		return fail(&clientError{Code: codeAdminShutdown, Msg: "access revoked", err: err})
	}
	n.conn.SetDeadline(time.Time{})
	if _, err := n.conn.Write(welcome(hc, s.upstreamPID, s.keySecret)); err != nil {
		cs.End(err)
	}
	return s, nil
}

// endLogin hands the session's database login back to the issuer, which
// revokes it when it was issued for this session alone.
func (s *session) endLogin() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.Context()), endLoginTimeout)
	defer cancel()
	if err := s.p.opts.Credentials.EndLogin(ctx, s.Grant, s.ID); err != nil {
		s.p.Log().Warn("postgres session login not ended", "session", s.ID, "err", err)
	}
}

// forwardCancel handles a CancelRequest: when the key pair belongs to a
// live session, the target is asked to cancel that session's query.
// Unknown keys are ignored silently, as PostgreSQL does.
func (p *Proxy) forwardCancel(k cancelKey) {
	s := p.lookupCancel(k)
	if s == nil {
		p.Log().Info("postgres cancel request with unknown key")
		return
	}
	s.Record(event.Event{Kind: event.KindNote, Op: "cancel", Text: "client sent a cancel request"})
	if s.guard.cancelHold() {
		// The held statement never reached the target: nothing runs
		// there to cancel, and a cancel would hit the refusal the
		// client is being sent instead.
		return
	}
	if err := s.cancelUpstream(); err != nil {
		p.Log().Warn("postgres cancel forward failed", "session", s.ID, "err", err)
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
