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
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/recorder/event"
)

// endCause says why a session ended, in the SSH proxy's terms; message,
// when set, is shown on every open terminal first. A close by either side
// or a keepalive failure is the session's cause as an *endCause; an end
// the broker caused is a *lifecycle.Cause, translated by cause.
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

// brokerEnd is how an end the broker caused shows on a terminal.
func brokerEnd(c *lifecycle.Cause) endCause {
	e := endCause{state: c.State(), by: c.By, reason: c.Reason}
	switch c.Kind {
	case lifecycle.Revoked:
		e.message = "access revoked: " + c.Reason
	case lifecycle.Idle:
		e.message = fmt.Sprintf("custos: session closed after %s without activity", c.IdleFor)
	default:
		e.message = "custos: session ended: " + c.Reason
	}
	return e
}

// session is one authenticated client connection with its upstream
// connection; the embedded lifecycle session tracks, times and records
// it. Channels opened on it are relayed to the upstream connection one to
// one.
type session struct {
	*lifecycle.Session
	p    *Proxy
	conn *ssh.ServerConn
	up   *ssh.Client

	nextChan atomic.Uint32

	mu    sync.Mutex
	chans map[*sessionChannel]struct{}
	wg    sync.WaitGroup
}

func (p *Proxy) handleConn(raw net.Conn) {
	setNoDelay(raw)
	st := &authState{p: p, raw: raw}
	_ = raw.SetDeadline(time.Now().Add(p.LoginTimeout()))
	conn, chans, reqs, err := ssh.NewServerConn(p.handshake(raw, st))
	st.mu.Lock()
	adm := st.adm
	st.mu.Unlock()
	if err != nil {
		if adm != nil {
			adm.release("handshake failed")
		}
		p.Log().Debug("ssh handshake ended", "client", raw.RemoteAddr().String(), "err", err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	s := &session{Session: adm.core, p: p, conn: conn, up: adm.upstream, chans: map[*sessionChannel]struct{}{}}
	s.run(chans, reqs)
}

// cause returns why the session ended, or an ordinary close.
func (s *session) cause() endCause {
	err := s.Session.Cause()
	var c *endCause
	if errors.As(err, &c) {
		return *c
	}
	if bc, ok := lifecycle.AsCause(err); ok {
		return brokerEnd(bc)
	}
	return endCause{state: "closed", by: "client", reason: "connection closed"}
}

// run serves the session until the client or target goes away or the
// session is terminated, then writes the final event.
func (s *session) run(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	stopShutdown := context.AfterFunc(s.Context(), s.shutdown)
	defer stopShutdown()
	go func() {
		_ = s.up.Wait()
		s.End(&endCause{state: "closed", by: "target", reason: "target closed the connection"})
	}()
	go func() {
		_ = s.conn.Wait()
		s.End(&endCause{state: "closed", by: "client", reason: "connection closed"})
	}()
	if iv := s.p.opts.KeepaliveInterval; iv > 0 {
		go s.keepalive("client", s.conn, iv)
		go s.keepalive("target", s.up, iv)
	}
	go s.serveGlobalRequests(reqs)
	for nc := range chans {
		if s.Context().Err() != nil {
			// Ending (revoked, expired, shutting down): nothing new opens
			// while the terminals are shown why.
			_ = nc.Reject(ssh.Prohibited, "custos: the session is ending")
			continue
		}
		switch nc.ChannelType() {
		case "session":
			s.wg.Go(func() { s.handleSessionChannel(nc) })
		case "direct-tcpip":
			s.wg.Go(func() { s.handleDirectTCPIP(nc) })
		default:
			s.refuseChannel(nc)
		}
	}
	// The client connection is gone; make sure the upstream one goes too.
	s.End(&endCause{state: "closed", by: "client", reason: "connection closed"})
	s.up.Close()
	s.wg.Wait()
	c := s.cause()
	s.Finish(lifecycle.End{State: c.state, By: c.by, Reason: c.reason})
}

// shutdown runs once when the session's context ends: terminals get the
// cause's message, then both connections close.
func (s *session) shutdown() {
	defer s.Stopped()
	if c := s.cause(); c.message != "" {
		s.mu.Lock()
		open := make([]*sessionChannel, 0, len(s.chans))
		for ch := range s.chans {
			open = append(open, ch)
		}
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, ch := range open {
			wg.Go(func() { ch.notifyEnd(c.message) })
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(revokeGrace):
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
		case <-s.Context().Done():
			return
		case <-t.C:
		}
		if since := outstanding.Load(); since != 0 && time.Since(time.Unix(0, since)) > 3*every {
			reason := side + " stopped answering keepalives"
			s.End(&endCause{state: "interrupted", by: "system", reason: reason, message: "custos: session ended: " + reason})
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
	_ = s.Record(event.Event{Kind: event.KindSSHChannel, Channel: num, Op: nc.ChannelType(), Denied: true})
	s.refused(num, nc.ChannelType(), "", "channel type not allowed")
	_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("custos: %s channels are not allowed", nc.ChannelType()))
}

// refused records and audits a refused request.
func (s *session) refused(ch uint32, what, dest, reason string) {
	if ch == 0 {
		_ = s.Record(event.Event{Kind: event.KindSSHRequest, Op: what, Text: dest, Denied: true})
	}
	s.Audit("ssh.refuse", broker.OutcomeDenied, reason, map[string]any{"request": what, "destination": dest, "channel": ch})
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
