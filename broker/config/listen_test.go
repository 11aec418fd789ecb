package config

import (
	"strings"
	"testing"
	"time"
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

// TestSSHCertTTL: certificates from custos login --ssh default to five
// minutes and cannot be configured past MaxSSHCertTTL.
func TestSSHCertTTL(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Auth.SSHCertTTL.D(); got != 5*time.Minute {
		t.Fatalf("default ssh_cert_ttl %v, want 5m", got)
	}
	if _, err := Parse([]byte("auth: {ssh_cert_ttl: 30m}\n" + minimal)); err != nil {
		t.Fatalf("30m refused: %v", err)
	}
	_, err = Parse([]byte("auth: {ssh_cert_ttl: 8h}\n" + minimal))
	if err == nil || !strings.Contains(err.Error(), "auth.ssh_cert_ttl") {
		t.Fatalf("8h: %v, want an auth.ssh_cert_ttl problem", err)
	}
}
