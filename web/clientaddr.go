package web

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/custos-pam/custos/broker/proxytrust"
)

// Forwarding headers TrustProxies can believe.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded"
)

// forwarded is which proxies' forwarding header is believed.
type forwarded struct {
	trusted proxytrust.Set
	header  string
}

// TrustProxies makes requests from trusted proxies name their client with
// header (HeaderXForwardedFor or HeaderForwarded, as the proxies send
// it): the right-most address in it that is not a trusted proxy's. The
// header of any other peer is ignored. Call it before serving Handler.
func (s *Server) TrustProxies(trusted proxytrust.Set, header string) error {
	switch http.CanonicalHeaderKey(header) {
	case HeaderXForwardedFor, HeaderForwarded:
	default:
		return fmt.Errorf("web: forwarding header %q is neither %s nor %s", header, HeaderXForwardedFor, HeaderForwarded)
	}
	s.mu.Lock()
	s.forwarded = forwarded{trusted: trusted, header: http.CanonicalHeaderKey(header)}
	s.mu.Unlock()
	return nil
}

// clientAddr sets every request's RemoteAddr to its client's address
// (ClientAddr) before anything reads it: the sign-in rate limits, the
// access log, audit records (client_addr, source) and the handlers mounted
// on the server all see the same address.
func (s *Server) clientAddr(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		f := s.forwarded
		s.mu.Unlock()
		if addr := ClientAddr(f.trusted, f.header, r); addr != r.RemoteAddr {
			r = r.WithContext(r.Context())
			r.RemoteAddr = addr
		}
		next.ServeHTTP(w, r)
	})
}

// ClientAddr is the one place a request's client address is decided. A
// request from a peer that is not a trusted proxy is its peer, whatever
// headers it sends. From a trusted proxy the forwarding header (header:
// X-Forwarded-For or Forwarded) is read from the right: each proxy
// appends the address it saw, so entries left of the last untrusted one
// are whatever that client claimed. The client is the right-most entry
// that is not a trusted proxy; if all are, the left-most; an entry that is
// not an address (unknown, a hostname) ends the walk at the proxy that
// added it. The result is "host:port" (port 0 when the header gave none).
func ClientAddr(trusted proxytrust.Set, header string, r *http.Request) string {
	if trusted.Empty() {
		return r.RemoteAddr
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !trusted.Contains(peer.Addr()) {
		return r.RemoteAddr
	}
	var hops []string
	switch header {
	case HeaderXForwardedFor:
		for _, v := range r.Header.Values(HeaderXForwardedFor) {
			hops = append(hops, strings.Split(v, ",")...)
		}
	case HeaderForwarded:
		hops = forwardedFor(r.Header.Values(HeaderForwarded))
	default:
		return r.RemoteAddr
	}
	client := peer
	for i := len(hops) - 1; i >= 0 && trusted.Contains(client.Addr()); i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = hop
	}
	if client == peer {
		return r.RemoteAddr
	}
	return client.String()
}

// forwardedFor lists the for= parameters of Forwarded headers (RFC 7239)
// in order; an element without one is an empty entry, which ends the walk.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			var fr string
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					fr = val
				}
			}
			out = append(out, fr)
		}
	}
	return out
}

// parseHop reads one forwarding entry: an address, optionally with a
// port ("192.0.2.1:4711", "[2001:db8::1]:4711"), optionally quoted (as
// Forwarded quotes IPv6). Zones, hostnames, "unknown" and obfuscated
// identifiers are not addresses.
func parseHop(s string) (netip.AddrPort, bool) {
	s = strings.TrimSpace(s)
	if u, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		s = u
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), 0), true
}
