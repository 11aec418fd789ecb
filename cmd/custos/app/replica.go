package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/web"
)

// replicaIndex is the session index with each entry stamped with the
// broker that writes it, listen.advertise_url: the recorder writes a
// session's entry from the broker that proxies it, so other replicas
// sharing the store know where a live session runs.
type replicaIndex struct {
	broker.SessionIndex
	self string
}

func (i replicaIndex) PutSession(ctx context.Context, s broker.Session) error {
	s.Replica = i.self
	return i.SessionIndex.PutSession(ctx, s)
}

// newForwarder returns the forwarder that hands the live view and
// termination of sessions other replicas run to them. It trusts the
// system roots and the certificates in listen.tls_cert (the leaf and any
// chain after it), so replicas sharing one certificate, or certificates
// from one internal CA bundled in the file, trust each other.
func newForwarder(cfg *config.Config, log *slog.Logger) (*web.Forwarder, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if cfg.Listen.TLSCert != "" {
		pem, err := os.ReadFile(cfg.Listen.TLSCert)
		if err != nil {
			return nil, fmt.Errorf("replicas: listen.tls_cert: %w", err)
		}
		roots.AppendCertsFromPEM(pem)
	}
	tr := &http.Transport{
		Proxy:                 nil, // replicas talk directly
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	return &web.Forwarder{Self: cfg.Listen.AdvertiseURL, Transport: tr, Log: log}, nil
}
