package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
)

// endCause says why a session ended. It is the cause of the session's
// context; message, when set, is shown on every open terminal first.
type endCause struct {
	// state is the End event's Op: closed, terminated or interrupted.
	state string
	// by is who ended it: client, target, system or security.
	by     string
	reason string
	// message is what the user sees; empty for an ordinary close.
	message string
}

func (c *endCause) Error() string { return c.reason }

// session is one authenticated client connection with its upstream
// connection and recording. Channels opened on it are relayed to the
// upstream connection one to one.
type session struct {
	p          *Proxy
	id         string
	user       string
	login      string
	target     *config.Target
	role       *config.Role
	grant      broker.Grant
	clientAddr string
	startedAt  time.Time

	conn *ssh.ServerConn
	up   *ssh.Client
	rec  *tap

	ctx    context.Context
	cancel context.CancelCauseFunc

	// lastActive is when bytes last moved, in Unix nanoseconds.
	lastActive atomic.Int64
	nextChan   atomic.Uint32

	mu    sync.Mutex
	chans map[*sessionChannel]struct{}
	wg    sync.WaitGroup
}

func (p *Proxy) handleConn(raw net.Conn) {
	setNoDelay(raw)
	st := &authState{p: p, raw: raw}
	_ = raw.SetDeadline(time.Now().Add(p.opts.AuthTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(p.handshake(raw, st))
	st.mu.Lock()
	adm := st.adm
	st.mu.Unlock()
	if err != nil {
		if adm != nil {
			adm.release("handshake failed")
		}
		p.log.Debug("ssh handshake ended", "client", raw.RemoteAddr().String(), "err", err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	s := &session{
		p: p, id: adm.sessionID, user: adm.user, login: adm.login, target: adm.target, role: adm.role,
		grant: adm.grant, clientAddr: raw.RemoteAddr().String(), startedAt: p.opts.Now().UTC(),
		conn: conn, up: adm.upstream, rec: adm.rec, chans: map[*sessionChannel]struct{}{},
	}
	s.touch()
	s.ctx, s.cancel = context.WithCancelCause(p.ctx)
	if !p.trackSession(s) {
		conn.Close()
		adm.release("broker shutting down")
		return
	}
	defer p.untrackSession(s)
	s.run(chans, reqs)
}

func (s *session) info() SessionInfo {
	return SessionInfo{ID: s.id, GrantID: s.grant.ID, User: s.user, Target: s.target.Name, Role: s.role.Name,
		Login: s.login, ClientAddr: s.clientAddr, StartedAt: s.startedAt}
}

func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// terminate ends the session with a cause; the first cause wins.
func (s *session) terminate(c endCause) {
	if c.message == "" && c.state == "terminated" {
		c.message = "access revoked: " + c.reason
	}
	if c.message == "" && c.reason != "" && c.state == "interrupted" {
		c.message = "custos: session ended: " + c.reason
	}
	s.cancel(&c)
}

// cause returns why the session ended, or an ordinary close.
func (s *session) cause() endCause {
	var c *endCause
	if errors.As(context.Cause(s.ctx), &c) {
		return *c
	}
	if s.p.ctx.Err() != nil {
		return endCause{state: "interrupted", by: "system", reason: "broker shutting down", message: "custos: broker shutting down"}
	}
	return endCause{state: "closed", by: "client", reason: "connection closed"}
}

// run serves the session until the client or target goes away or the
// session is terminated, then writes the final event.
func (s *session) run(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	p := s.p
	s.rec.setOnFail(s.ctx, func(err error) {
		p.log.Error("ssh recording failed; ending session", "session", s.id, "err", err)
		s.terminate(endCause{state: "interrupted", by: "system", reason: "recording failed"})
	})
	p.log.Info("ssh session started", "session", s.id, "user", s.user, "target", s.target.Name, "login", s.login, "client", s.clientAddr)
	p.audit(s.ctx, AuditEntry{Actor: s.user, Action: "session.start", Target: s.target.Name, Outcome: broker.OutcomeSuccess,
		Details: map[string]any{"session": s.id, "grant": s.grant.ID, "protocol": "ssh", "login": s.login, "client": s.clientAddr}})

	stopShutdown := context.AfterFunc(s.ctx, s.shutdown)
	defer stopShutdown()
	// A revocation announced while the connection was being admitted found
	// no tracked session; look once more now that it is tracked.
	gctx, gcancel := context.WithTimeout(s.ctx, p.opts.AuthTimeout)
	if _, err := p.opts.Grants.ActiveGrantAs(gctx, s.user, s.target.Name, s.role.Name); err != nil && gctx.Err() == nil {
		s.terminate(endCause{state: "terminated", by: "system", reason: "grant ended"})
	}
	gcancel()
	grantEnd := time.AfterFunc(time.Until(s.grant.EffectiveEnd()), func() {
		s.terminate(endCause{state: "terminated", by: "system", reason: "grant expired"})
	})
	defer grantEnd.Stop()
	go func() {
		_ = s.up.Wait()
		s.cancel(&endCause{state: "closed", by: "target", reason: "target closed the connection"})
	}()
	go func() {
		_ = s.conn.Wait()
		s.cancel(&endCause{state: "closed", by: "client", reason: "connection closed"})
	}()
	if iv := p.opts.KeepaliveInterval; iv > 0 {
		go s.keepalive("client", s.conn, iv)
		go s.keepalive("target", s.up, iv)
	}
	if idle := s.role.IdleTimeout.D(); idle > 0 {
		go s.idleWatch(idle)
	}
	go s.serveGlobalRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handleSessionChannel(nc)
			}()
		case "direct-tcpip":
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handleDirectTCPIP(nc)
			}()
		default:
			s.refuseChannel(nc)
		}
	}
	// The client connection is gone; make sure the upstream one goes too.
	s.cancel(&endCause{state: "closed", by: "client", reason: "connection closed"})
	s.up.Close()
	s.wg.Wait()
	s.finish()
}

// finish writes the final event, closes the recording and audits the end.
func (s *session) finish() {
	c := s.cause()
	if err := s.rec.end(c); err != nil {
		s.p.log.Error("ssh recording close failed", "session", s.id, "err", err)
	}
	outcome := broker.OutcomeSuccess
	if c.state == "interrupted" {
		outcome = broker.OutcomeError
	}
	s.p.audit(context.WithoutCancel(s.ctx), AuditEntry{Actor: s.user, Action: "session.end", Target: s.target.Name, Outcome: outcome,
		Reason: c.reason, Details: map[string]any{"session": s.id, "grant": s.grant.ID, "state": c.state, "by": c.by}})
	s.p.log.Info("ssh session ended", "session", s.id, "state", c.state, "by", c.by, "reason", c.reason)
}

// shutdown runs once when the session's context ends: terminals get the
// cause's message, then both connections close.
func (s *session) shutdown() {
	c := s.cause()
	if c.message != "" {
		s.mu.Lock()
		open := make([]*sessionChannel, 0, len(s.chans))
		for ch := range s.chans {
			open = append(open, ch)
		}
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, ch := range open {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch.notifyEnd(c.message)
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(revokeGrace):
		}
		if c.state == "terminated" {
			s.p.audit(context.WithoutCancel(s.ctx), AuditEntry{Actor: c.by, Action: "session.terminate", Target: s.target.Name,
				Outcome: broker.OutcomeSuccess, Reason: c.reason, Details: map[string]any{"session": s.id, "grant": s.grant.ID, "user": s.user}})
		}
	}
	s.conn.Close()
	s.up.Close()
}

// keepalive probes one side; three unanswered intervals end the session.
func (s *session) keepalive(side string, c ssh.Conn, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var outstanding atomic.Int64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if since := outstanding.Load(); since != 0 && time.Since(time.Unix(0, since)) > 3*every {
			s.terminate(endCause{state: "interrupted", by: "system", reason: side + " stopped answering keepalives"})
			return
		}
		if outstanding.CompareAndSwap(0, time.Now().UnixNano()) {
			go func() {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				if err == nil {
					outstanding.Store(0)
				}
			}()
		}
	}
}

// idleWatch ends the session when no bytes moved for the role's idle
// timeout.
func (s *session) idleWatch(idle time.Duration) {
	t := time.NewTicker(min(max(idle/10, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, s.lastActive.Load())) >= idle {
			s.terminate(endCause{state: "terminated", by: "system", reason: fmt.Sprintf("idle for %s", idle),
				message: fmt.Sprintf("custos: session closed after %s without activity", idle)})
			return
		}
	}
}

// serveGlobalRequests answers the client's connection-level requests:
// remote forwarding is refused and audited, everything else declined.
func (s *session) serveGlobalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward", "streamlocal-forward@openssh.com":
			var m struct {
				Addr string
				Port uint32
			}
			dest := ""
			if err := ssh.Unmarshal(req.Payload, &m); err == nil {
				dest = net.JoinHostPort(m.Addr, fmt.Sprint(m.Port))
			}
			s.refused(0, req.Type, dest, "remote forwarding is not allowed")
			_ = req.Reply(false, nil)
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// refuseChannel rejects a channel type the proxy does not relay.
func (s *session) refuseChannel(nc ssh.NewChannel) {
	num := s.nextChan.Add(1)
	_ = s.rec.record(event.Event{Kind: event.KindSSHChannel, Channel: num, Op: nc.ChannelType(), Denied: true})
	s.refused(num, nc.ChannelType(), "", "channel type not allowed")
	_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("custos: %s channels are not allowed", nc.ChannelType()))
}

// refused records and audits a refused request.
func (s *session) refused(ch uint32, what, dest, reason string) {
	if ch == 0 {
		_ = s.rec.record(event.Event{Kind: event.KindSSHRequest, Op: what, Text: dest, Denied: true})
	}
	s.p.audit(s.ctx, AuditEntry{Actor: s.user, Action: "ssh.refuse", Target: s.target.Name, Outcome: broker.OutcomeDenied,
		Reason: reason, Details: map[string]any{"session": s.id, "request": what, "destination": dest, "channel": ch}})
}

func (s *session) addChannel(c *sessionChannel) {
	s.mu.Lock()
	s.chans[c] = struct{}{}
	s.mu.Unlock()
}

func (s *session) removeChannel(c *sessionChannel) {
	s.mu.Lock()
	delete(s.chans, c)
	s.mu.Unlock()
}
