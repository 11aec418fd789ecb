package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
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

// TestTargetTLSModes: verify-full and verify-ca take a CA file and a
// server name; both are refused with modes that would ignore them.
func TestTargetTLSModes(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, testCAPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	target := func(pg string) string {
		return strings.Replace(minimal, "    address: 127.0.0.1:5432\n", "    address: 127.0.0.1:5432\n    postgres: "+pg+"\n", 1)
	}
	tests := []struct {
		pg, problem string
	}{
		{`{tls: verify-full, ca_cert: ` + ca + `}`, ""},
		{`{tls: verify-full, ca_cert: ` + ca + `, tls_server_name: db1.internal}`, ""},
		{`{tls: verify-full}`, ""},
		{`{tls: verify-ca, ca_cert: ` + ca + `}`, ""},
		{`{tls: require, ca_cert: ` + ca + `}`, "postgres.ca_cert"},
		{`{tls: prefer, tls_server_name: db1.internal}`, "postgres.tls_server_name"},
		{`{tls: verify}`, "postgres.tls"},
	}
	for _, tc := range tests {
		t.Run(tc.pg, func(t *testing.T) {
			_, err := Parse([]byte(target(tc.pg)))
			if tc.problem == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)) {
				t.Fatalf("got %v, want a %s problem", err, tc.problem)
			}
		})
	}
}

// testCAPEM is a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
