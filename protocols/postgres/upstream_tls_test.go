package pgproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
)

// otherCA writes a CA certificate that signed nothing the target holds.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUpstreamVerifyFull logs in to the real PostgreSQL (TLS on, server
// certificate for localhost, 127.0.0.1 and ::1 signed by the devstack CA)
// with each verifying mode: the right CA and name get a TLS connection;
// a CA that did not sign the certificate, or a name the certificate does
// not carry, are refused before any credential is sent.
func TestUpstreamVerifyFull(t *testing.T) {
	pg := devstack.StartPostgres(t)
	wrongCA := otherCA(t)
	port := fmt.Sprint(pg.Port)
	tests := []struct {
		name, mode, addr, ca, serverName string
		// refused is a substring of the error, or "" for success.
		refused string
	}{
		{"verify-full, right CA, IP", "verify-full", pg.Host + ":" + port, pg.CACertPath, "", ""},
		{"verify-full, right CA, host name", "verify-full", "localhost:" + port, pg.CACertPath, "", ""},
		{"verify-full, right CA, server name", "verify-full", pg.Host + ":" + port, pg.CACertPath, "localhost", ""},
		{"verify-full, wrong CA", "verify-full", pg.Host + ":" + port, wrongCA, "", "certificate signed by unknown authority"},
		{"verify-full, system roots", "verify-full", pg.Host + ":" + port, "", "", "certificate signed by unknown authority"},
		{"verify-full, wrong host name", "verify-full", pg.Host + ":" + port, pg.CACertPath, "db.example.org", "not db.example.org"},
		{"verify-ca, wrong host name", "verify-ca", pg.Host + ":" + port, pg.CACertPath, "db.example.org", ""},
		{"verify-ca, wrong CA", "verify-ca", pg.Host + ":" + port, wrongCA, "", "unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := &config.Target{Name: "db", Kind: "postgres", Address: tc.addr,
				Postgres: config.TargetPostgres{TLS: tc.mode, CACert: tc.ca, TLSServerName: tc.serverName}}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			hc, err := dialUpstream(ctx, target, "postgres", pg.User, pg.Password, nil)
			if tc.refused != "" {
				if err == nil {
					hc.Conn.Close()
					t.Fatal("connected, want a refusal")
				}
				if !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("refused with %v, want %q", err, tc.refused)
				}
				if strings.Contains(err.Error(), pg.Password) {
					t.Fatal("the error holds the password")
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer hc.Conn.Close()
			if _, ok := hc.Conn.(*tls.Conn); !ok {
				t.Fatalf("upstream connection is %T, not TLS", hc.Conn)
			}
		})
	}
}
