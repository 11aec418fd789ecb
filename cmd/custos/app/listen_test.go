package app

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/config"
)

// TestRunRefusesPlaintextOffLoopback: a config built without Validate
// still cannot start a plain HTTP listener on every interface, and
// nothing is created before the refusal.
func TestRunRefusesPlaintextOffLoopback(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := &config.Config{Listen: config.Listen{HTTP: "0.0.0.0:0", DataDir: data}}
	err := Run(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "insecure_http") {
		t.Fatalf("Run = %v, want a refusal naming insecure_http", err)
	}
	if m, _ := filepath.Glob(data); len(m) != 0 {
		t.Fatalf("data dir created before the refusal: %v", m)
	}
}

func TestPlainCookies(t *testing.T) {
	for _, tc := range []struct {
		cert, url string
		plain     bool
	}{
		{"", "http://127.0.0.1:8080", true},
		{"", "https://custos.example.org", false},
		{"/etc/custos/tls.crt", "https://custos.example.org", false},
	} {
		cfg := &config.Config{PublicURL: tc.url, Listen: config.Listen{TLSCert: tc.cert}}
		if got := plainCookies(cfg); got != tc.plain {
			t.Errorf("cert %q url %q: plain cookies %v, want %v", tc.cert, tc.url, got, tc.plain)
		}
	}
}
