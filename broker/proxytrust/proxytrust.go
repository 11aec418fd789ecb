// Package proxytrust owns the set of trusted proxies (load balancers,
// reverse proxies) whose word on a client's address is believed: the
// PROXY protocol header on the SSH and PostgreSQL listeners and
// X-Forwarded-For or Forwarded on HTTP. Anyone else's claim is ignored or
// refused, so a client cannot pick the address its sign-in failures are
// counted against or that the audit log names.
package proxytrust

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Set is a set of proxy addresses (CIDR prefixes). The zero value
// trusts no one.
type Set struct {
	prefixes []netip.Prefix
}

// Parse reads CIDR prefixes ("10.0.0.0/8", "2001:db8::/32") or
// single addresses ("10.1.2.3", taken as /32 or /128).
func Parse(cidrs []string) (Set, error) {
	var t Set
	for _, s := range cidrs {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			if err == nil && a.Zone() != "" {
				return Set{}, fmt.Errorf("proxytrust: trusted proxy %q: zones are not allowed", s)
			}
			if err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return Set{}, fmt.Errorf("proxytrust: trusted proxy %q: not an address or CIDR prefix", s)
		}
		if p.Addr().Zone() != "" {
			return Set{}, fmt.Errorf("proxytrust: trusted proxy %q: zones are not allowed", s)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Empty reports whether no address is trusted.
func (t Set) Empty() bool { return len(t.prefixes) == 0 }

// Contains reports whether a is a trusted proxy's address. An IPv4
// address mapped into IPv6 (::ffff:10.0.0.1) is taken as the IPv4
// address.
func (t Set) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ContainsAddr reports whether a connection's address (a *net.TCPAddr or
// anything whose String is "host:port") is a trusted proxy's.
func (t Set) ContainsAddr(a net.Addr) bool {
	if t.Empty() || a == nil {
		return false
	}
	return t.Contains(AddrOf(a))
}

// AddrOf is the IP address of a connection's address, or the invalid
// Addr when it has none.
func AddrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
