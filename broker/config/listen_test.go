package config

import (
	"strings"
	"testing"
)

// TestPlaintextHTTPOnlyOnLoopback: a broker without a certificate listens
// in plain HTTP on loopback only, unless listen.insecure_http says so.
func TestPlaintextHTTPOnlyOnLoopback(t *testing.T) {
	tests := []struct {
		listen string
		ok     bool
	}{
		{`{http: "127.0.0.1:8080"}`, true},
		{`{http: "127.0.0.2:8080"}`, true},
		{`{http: "[::1]:8080"}`, true},
		{`{http: "localhost:8080"}`, true},
		{`{http: "0.0.0.0:8080"}`, false},
		{`{http: ":8080"}`, false},
		{`{http: "[::]:8080"}`, false},
		{`{http: "10.1.2.3:8080"}`, false},
		{`{http: "custos.internal:8080"}`, false},
		{`{http: "0.0.0.0:8080", insecure_http: true}`, true},
		{`{http: "0.0.0.0:8443", tls_cert: /etc/custos/tls.crt, tls_key: /etc/custos/tls.key}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.listen, func(t *testing.T) {
			_, err := Parse([]byte("listen: " + tc.listen + "\n" + minimal))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "listen.http") || !strings.Contains(err.Error(), "insecure_http")) {
				t.Fatalf("got %v, want a listen.http problem naming insecure_http", err)
			}
		})
	}
}
