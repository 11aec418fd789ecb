package pgproxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/recorder/event"
)

// direction names a copier in results.
type direction int

const (
	toUpstream direction = iota
	toClient
)

type copyResult struct {
	dir direction
	err error
}

// run relays the session until either side ends it, the session is
// ended by the broker (revocation, grant end, idle timeout, shutdown,
// recorder failure) or a protocol error occurs, then tears it down in
// this order:
//
//  1. stop both copiers (read deadlines now; writes get closeGrace),
//  2. ask the target to cancel a running query if the session was ended
//     by the broker,
//  3. send the client FATAL with the cause, if it is client-visible and the
//     client is at a message boundary,
//  4. send the target Terminate and close both connections (and the
//     masking catalog connection),
//  5. hand the session's own database login back,
//  6. record the end, close the recording, audit the end and untrack the
//     session.
func (s *session) run() {
	p := s.p
	defer p.unregisterCancelKey(s)
	maxMsg := p.opts.MaxMessageSize
	co := &clientObserver{s: s, red: s.red, limit: statementLimit(s.Target)}
	so := newServerObserver(s, 'I', s.results.on, s.results.rows, s.results.bytes)
	up := newCopier(s.relaySource(), s.upstream, co, maxMsg, maxMsg)
	var down *copier
	if s.mask == nil {
		down = newCopier(s.upstream, s.relaySink(), so, maxServerMessage, maxMsg)
	} else {
		// Masked: every server message is decoded (up to the message
		// limit) and rewritten, except the CopyData of a refused COPY,
		// which is streamed into the void.
		co.mask = s.mask
		down = newCopier(s.upstream, s.relaySink(), &maskHandler{ctx: s.Context(), m: s.mask, so: so, cat: s.cat}, maxServerMessage, maxMsg)
		s.Record(event.Event{Kind: event.KindNote, Op: "masking", Text: s.mask.summary})
		if s.mask.unmask != "" {
			s.Record(event.Event{Kind: event.KindNote, Op: "unmask", Text: s.mask.unmask})
		}
	}
	if s.guard != nil && s.guard.catalogNote != "" {
		s.Record(event.Event{Kind: event.KindNote, Op: "guardrail_catalog", Text: s.guard.catalogNote})
	}
	up.touch = func(n int) { s.Relayed(metrics.ToTarget, n) }
	down.touch = func(n int) { s.Relayed(metrics.ToClient, n) }
	up.flush = func() error { return s.flush(&co.evs) }
	down.flush = func() error { return s.flush(&so.evs) }

	results := make(chan copyResult, 2)
	go func() { results <- copyResult{toUpstream, up.run()} }()
	go func() { results <- copyResult{toClient, down.run()} }()

	var first copyResult
	running := 2
	select {
	case first = <-results:
		running--
	case <-s.Context().Done():
	}
	// Ended by the broker (revocation, expiry, idle, recording failure,
	// shutdown), not by a client that went away during the welcome.
	_, byBroker := lifecycle.AsCause(s.Cause())
	s.End(protocolError(first))
	cause := s.Cause()

	// 1. Stop both copiers.
	now := time.Now()
	s.client.SetReadDeadline(now)
	s.upstream.SetReadDeadline(now)
	s.upstream.SetWriteDeadline(now.Add(closeGrace))
	s.client.SetWriteDeadline(now.Add(closeGrace))
	for ; running > 0; running-- {
		<-results
	}
	s.Stopped()

	// 2. Cancel what the target is running when the broker ended it.
	ce, visible := clientCause(cause)
	if !visible && byBroker {
		ce, visible = clientCause(&lifecycle.Cause{Kind: lifecycle.Shutdown, Reason: "broker shutting down"})
	}
	var cancelling sync.WaitGroup
	defer cancelling.Wait()
	if byBroker && s.busy.Load() {
		cancelling.Go(func() {
			if err := s.cancelUpstream(); err != nil {
				p.Log().Warn("postgres cancel on termination failed", "session", s.ID, "err", err)
			}
		})
	}

	// 3. Tell the client why.
	told := false
	if visible && down.atBoundary {
		s.client.SetWriteDeadline(time.Now().Add(closeGrace))
		_, err := s.client.Write(appendFatal(nil, ce))
		told = err == nil
	}

	// 4. Close both sides.
	if up.atBoundary && !co.terminated {
		s.upstream.SetWriteDeadline(time.Now().Add(closeGrace))
		s.upstream.Write([]byte{'X', 0, 0, 0, 4})
	}
	s.upstream.Close()
	if s.cat != nil {
		// The catalog connection uses the session's login: closed before
		// the login is handed back.
		s.cat.close()
	}
	if told {
		lingerClose(s.client)
	} else {
		s.client.Close()
	}

	// 5. The session's own database login, if it had one, ends with it.
	s.endLogin()

	// 6. Final event and audit.
	end := endEvent(first, cause, visible, ce, co.terminated)
	if end.Op != "terminated" {
		s.Record(event.Event{Kind: event.KindNote, Op: "disconnect", Name: end.Name, Text: end.Text})
	}
	s.Finish(lifecycle.End{State: end.Op, By: end.Name, Reason: end.Text,
		Details: map[string]any{"bytes_in": up.forwarded, "bytes_out": down.forwarded}})
}

// flush records the events a copier's handler gathered from one read and
// empties the slice.
func (s *session) flush(evs *[]event.Event) error {
	var err error
	for i := range *evs {
		if err == nil {
			err = s.Record((*evs)[i])
		}
	}
	clear(*evs)
	*evs = (*evs)[:0]
	return err
}

// lingerTime bounds lingerClose; the client has its FIN at once.
const lingerTime = 250 * time.Millisecond

// lingerClose closes a connection the broker just wrote its FATAL to:
// it shuts down the sending side first and discards what the client still
// sends for up to lingerTime. Closing a socket with unread input makes the
// kernel send a reset, which can destroy the FATAL before the client reads
// it.
func lingerClose(c net.Conn) {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		raw.SetReadDeadline(time.Now().Add(lingerTime))
		io.Copy(io.Discard, io.LimitReader(raw, 1<<20))
	}
	c.Close()
}

// protocolError turns a copier's framing error into the error the client
// sees; other results pass unchanged.
func protocolError(r copyResult) error {
	if !errors.Is(r.err, errFrameLength) && !errors.Is(r.err, errFrameTooLarge) {
		return r.err
	}
	from := "client"
	if r.dir == toClient {
		from = "target"
	}
	return &clientError{Code: codeProtocolViolation, Msg: "custos: invalid message from " + from + ": " + r.err.Error(), err: r.err}
}

// endEvent describes how the session ended.
func endEvent(first copyResult, cause error, visible bool, ce *clientError, clientTerminated bool) event.Event {
	e := event.Event{Kind: event.KindEnd}
	if visible {
		// Terminated by the broker, or a protocol error it answered.
		e.Op, e.Name, e.Text = "terminated", "broker", ce.Msg
		return e
	}
	// Which side failed: the copier's source, or its destination when
	// the write failed.
	var we *writeError
	clientSide := first.dir == toUpstream
	if errors.As(first.err, &we) {
		clientSide = !clientSide
	}
	switch {
	case clientTerminated:
		// The target closing after the client's Terminate may be seen
		// first; the client still ended the session.
		e.Op, e.Name, e.Text = "closed", "client", "client sent Terminate"
	case clientSide && isClosedConn(first.err):
		e.Op, e.Name, e.Text = "closed", "client", "client disconnected"
	case clientSide:
		e.Op, e.Name, e.Text = "interrupted", "client", "client connection failed: "+errText(cause)
	case isClosedConn(first.err):
		e.Op, e.Name, e.Text = "closed", "target", "target closed the connection"
	default:
		e.Op, e.Name, e.Text = "interrupted", "target", "target connection failed: "+errText(cause)
	}
	return e
}

func isClosedConn(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

func errText(err error) string {
	if err == nil {
		return "unknown"
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}
