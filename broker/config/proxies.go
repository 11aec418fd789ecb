package config

import (
	"net/http"

	"github.com/custos-pam/custos/broker/proxytrust"
)

// DefaultForwardedHeader is listen.forwarded_header's default.
const DefaultForwardedHeader = "X-Forwarded-For"

// Forwarded is listen.forwarded_header, or its default when empty.
func (l Listen) Forwarded() string {
	if l.ForwardedHeader == "" {
		return DefaultForwardedHeader
	}
	return l.ForwardedHeader
}

// Trusted is listen.trusted_proxies as a set.
func (l Listen) Trusted() (proxytrust.Set, error) { return proxytrust.Parse(l.TrustedProxies) }

func (l Listen) validateProxies(ck *checker) {
	set, err := l.Trusted()
	if err != nil {
		ck.add("listen.trusted_proxies", "%v", err)
		return
	}
	switch http.CanonicalHeaderKey(l.ForwardedHeader) {
	case "", DefaultForwardedHeader, "Forwarded":
	default:
		ck.add("listen.forwarded_header", "must be X-Forwarded-For or Forwarded, not %q", l.ForwardedHeader)
	}
	if l.ProxyProtocol && set.Empty() {
		ck.add("listen.proxy_protocol", "needs listen.trusted_proxies: the load balancers whose PROXY header is believed")
	}
	if l.HTTPProxyProtocol && set.Empty() {
		ck.add("listen.http_proxy_protocol", "needs listen.trusted_proxies: the load balancers whose PROXY header is believed")
	}
}
