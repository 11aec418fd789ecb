package lifecycle

import (
	"errors"
	"net"

	"github.com/custos-pam/custos/protocols/proxyproto"
)

// handle reads a load balancer's PROXY header when the proxy expects one
// (Options.ProxyProtocol), then hands the connection to the proxy. A
// connection the header policy refuses is closed here: a trusted proxy
// without a valid header, or a client that is not a trusted proxy and
// claims another address with a header of its own.
func (c *Core) handle(raw net.Conn) {
	conn, err := c.cfg.ProxyProtocol.Accept(raw)
	if err != nil {
		c.proxyRefused(raw, err)
		raw.Close()
		return
	}
	c.cfg.Handle(conn)
}

// proxyRefused logs a refused connection and, when the client sent
// something to refuse (not a timeout or a connection closed before its
// first bytes, as a load balancer's plain TCP health check is), audits
// it as an anonymous refusal from the address it really came from.
func (c *Core) proxyRefused(raw net.Conn, err error) {
	peer := raw.RemoteAddr().String()
	if !errors.Is(err, proxyproto.ErrNoHeader) && !errors.Is(err, proxyproto.ErrMalformed) &&
		!errors.Is(err, proxyproto.ErrUntrustedHeader) {
		c.log.Debug("connection closed before its PROXY protocol header", "client", peer, "err", err)
		return
	}
	reason := "PROXY protocol header from an address that is not a trusted proxy (listen.trusted_proxies)"
	if !errors.Is(err, proxyproto.ErrUntrustedHeader) {
		reason = "trusted proxy sent no valid PROXY protocol header"
	}
	c.log.Warn("connection refused", "client", peer, "reason", reason, "err", err)
	c.Refused(c.ctx, Refusal{Reason: reason, Anonymous: true,
		Details: map[string]any{"client_addr": peer}})
}
