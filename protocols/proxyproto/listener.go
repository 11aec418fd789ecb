package proxyproto

import (
	"net"
	"sync"
	"time"
)

// Listener applies a Policy to every connection it accepts, for servers
// such as net/http that serve each connection in a goroutine of its own.
// The header is read there, when the connection is first used (its
// RemoteAddr, Read or Write), so a slow or silent client holds up no
// other. A refused connection fails its reads and writes with the
// *Refusal, and the server closes it.
type Listener struct {
	net.Listener
	// Policy decides whose header is believed; nil reads none.
	Policy *Policy
}

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.Policy == nil {
		return c, err
	}
	return &lazyConn{raw: c, p: l.Policy}, nil
}

// lazyConn reads its PROXY header on first use.
type lazyConn struct {
	raw  net.Conn
	p    *Policy
	once sync.Once
	conn net.Conn // raw when refused
	err  error
}

func (c *lazyConn) init() {
	c.once.Do(func() {
		c.conn, c.err = c.p.Accept(c.raw)
		if c.err != nil {
			c.conn = c.raw
		}
	})
}

func (c *lazyConn) Read(b []byte) (int, error) {
	if c.init(); c.err != nil {
		return 0, c.err
	}
	return c.conn.Read(b)
}

func (c *lazyConn) Write(b []byte) (int, error) {
	if c.init(); c.err != nil {
		return 0, c.err
	}
	return c.conn.Write(b)
}

// RemoteAddr is the client's address, or the peer's when refused.
func (c *lazyConn) RemoteAddr() net.Addr {
	c.init()
	return c.conn.RemoteAddr()
}

// Close closes the socket, also while the header is being read.
func (c *lazyConn) Close() error                       { return c.raw.Close() }
func (c *lazyConn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *lazyConn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *lazyConn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *lazyConn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }
