package proxyproto

import (
	"github.com/custos-pam/custos/broker/proxytrust"

	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultTimeout is Policy.Timeout's default.
const DefaultTimeout = 5 * time.Second

// Policy decides whose PROXY header a listener believes. A nil *Policy
// reads no header and leaves every connection as it is.
type Policy struct {
	// Trusted are the proxies (load balancers) that must send a header
	// and whose header is believed. Required.
	Trusted proxytrust.Set
	// Timeout bounds reading the first bytes of a connection: the header
	// of a trusted proxy, or enough of any other client's data to tell
	// that it does not start with one. Default: DefaultTimeout.
	Timeout time.Duration
}

// Refusal is the error Accept returns for a connection it refuses; Peer is
// the address the connection really came from.
type Refusal struct {
	Peer net.Addr
	// Trusted is whether Peer is a trusted proxy.
	Trusted bool
	Err     error
}

func (e *Refusal) Error() string {
	who := "untrusted peer"
	if e.Trusted {
		who = "trusted proxy"
	}
	return fmt.Sprintf("proxyproto: connection from %s %s refused: %v", who, e.Peer, e.Err)
}

func (e *Refusal) Unwrap() error { return e.Err }

// ErrUntrustedHeader is a Refusal's Err for a PROXY header sent by an
// address that is not a trusted proxy: a client claiming another
// address than its own.
var ErrUntrustedHeader = errors.New("PROXY protocol header from an address that is not a trusted proxy")

// Accept reads the start of a newly accepted connection within Timeout.
// From a trusted proxy it reads the PROXY header and returns a *Conn
// whose RemoteAddr is the client the header names (or the proxy's own
// address for a LOCAL or UNKNOWN header). From any other address it
// reads the first 6 bytes: if they start a header the connection is
// refused (ErrUntrustedHeader), otherwise a *Conn that gives them back
// first is returned. Every error is a *Refusal; the caller closes conn.
func (p *Policy) Accept(conn net.Conn) (net.Conn, error) {
	if p == nil {
		return conn, nil
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	peer := conn.RemoteAddr()
	trusted := p.Trusted.ContainsAddr(peer)
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, &Refusal{Peer: peer, Trusted: trusted, Err: err}
	}
	h, start, err := Read(conn)
	switch {
	case trusted && err != nil:
		return nil, &Refusal{Peer: peer, Trusted: true, Err: err}
	case !trusted && err == nil:
		return nil, &Refusal{Peer: peer, Err: ErrUntrustedHeader}
	case !trusted && errors.Is(err, ErrMalformed):
		return nil, &Refusal{Peer: peer, Err: fmt.Errorf("%w: %w", ErrUntrustedHeader, err)}
	case !trusted && !errors.Is(err, ErrNoHeader):
		// Fewer than 6 bytes before the deadline or the end.
		return nil, &Refusal{Peer: peer, Err: err}
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, &Refusal{Peer: peer, Trusted: trusted, Err: err}
	}
	c := &Conn{Conn: conn, remote: peer, pending: start}
	if trusted && h.Command == Proxy {
		c.header, c.forwarded = h, true
		c.remote = &net.TCPAddr{IP: h.Source.Addr().Unmap().AsSlice(), Port: int(h.Source.Port())}
	}
	return c, nil
}

// Conn is a connection accepted through a Policy: its RemoteAddr is the
// client's address as a trusted proxy named it.
type Conn struct {
	net.Conn
	remote    net.Addr
	header    Header
	forwarded bool
	// pending are bytes read to look for a header that belong to the
	// connection's own data; Read returns them first.
	pending []byte
}

// RemoteAddr is the client's address: the PROXY header's source from a
// trusted proxy, otherwise the connection's own peer.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Forwarded reports whether a trusted proxy's header named the client,
// and returns that header.
func (c *Conn) Forwarded() (Header, bool) { return c.header, c.forwarded }

// NetConn is the underlying connection; its RemoteAddr is the proxy's.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Pending hands over the bytes read past no header that Read has not
// returned yet; Read no longer returns them. A caller that reads the
// underlying connection directly (NetConn) must take them first.
func (c *Conn) Pending() []byte {
	p := c.pending
	c.pending = nil
	return p
}

// Read returns the pending bytes, then reads the connection.
func (c *Conn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite shuts down the writing side when the underlying connection
// can (a TCP connection).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
