package config

import (
	"os"
	"strings"
	"testing"
)

func TestTrustedProxiesValidate(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"none", "", ""},
		{"cidrs", "  trusted_proxies: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32']\n  proxy_protocol: true\n", ""},
		{"bad cidr", "  trusted_proxies: [10.0.0.0/33]\n", "listen.trusted_proxies"},
		{"hostname", "  trusted_proxies: [lb.example.com]\n", "listen.trusted_proxies"},
		{"proxy protocol without proxies", "  proxy_protocol: true\n", "listen.proxy_protocol"},
		{"http proxy protocol without proxies", "  http_proxy_protocol: true\n", "listen.http_proxy_protocol"},
		{"forwarded", "  forwarded_header: forwarded\n", ""},
		{"other header", "  forwarded_header: X-Real-IP\n", "listen.forwarded_header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte("listen:\n  http: 127.0.0.1:8080\n" + tc.yaml))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one about %s", err, tc.want)
			}
		})
	}
}

// TestProductionConfigTrustedProxyLines: the commented load balancer
// lines of the hardened example config, uncommented, give a valid config
// with the PROXY protocol on.
func TestProductionConfigTrustedProxyLines(t *testing.T) {
	b, err := os.ReadFile("../../deploy/custos.production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		for _, key := range []string{"trusted_proxies:", "proxy_protocol:", "forwarded_header:"} {
			if strings.HasPrefix(l, "  # "+key) {
				lines[i], n = "  "+strings.TrimPrefix(l, "  # "), n+1
			}
		}
	}
	if n != 3 {
		t.Fatalf("found %d commented trusted-proxy lines, want 3", n)
	}
	c, err := Parse([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if set, err := c.Listen.Trusted(); err != nil || set.Empty() || !c.Listen.ProxyProtocol || c.Listen.Forwarded() != DefaultForwardedHeader {
		t.Fatalf("listen %+v: %v", c.Listen, err)
	}
}
