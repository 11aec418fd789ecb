package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit/stream"
	"github.com/custos-pam/custos/broker/config"
)

// auditStreamDrain bounds how long a shutdown waits for the audit streams
// to send the last records.
const auditStreamDrain = 3 * time.Second

// auditStreams are the configured SIEM destinations of the audit log.
type auditStreams []*stream.Streamer

// startAuditStreams starts one streamer per destination in
// audit.stream, each with its cursor in the data dir, until ctx ends;
// spawn runs the loops.
func startAuditStreams(ctx context.Context, cfg *config.Config, st broker.Store, log *slog.Logger, spawn func(func())) (auditStreams, error) {
	type dest struct {
		name       string
		sink       stream.Sink
		maxBackoff config.Duration
	}
	var dests []dest
	if w := cfg.Audit.Stream.Webhook; w != nil {
		secret, err := w.Secret.Resolve()
		if err != nil {
			return nil, fmt.Errorf("audit.stream.webhook.secret: %w", err)
		}
		roots, err := caPool(w.CACert)
		if err != nil {
			return nil, fmt.Errorf("audit.stream.webhook.ca_cert: %w", err)
		}
		dests = append(dests, dest{"webhook", stream.NewWebhook(w.URL, []byte(secret),
			&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, w.Timeout.D()), w.MaxBackoff})
	}
	if s := cfg.Audit.Stream.Syslog; s != nil {
		roots, err := caPool(s.CACert)
		if err != nil {
			return nil, fmt.Errorf("audit.stream.syslog.ca_cert: %w", err)
		}
		name := s.ServerName
		if name == "" {
			name, _, _ = net.SplitHostPort(s.Address)
		}
		host, _ := os.Hostname()
		dests = append(dests, dest{"syslog", stream.NewSyslog(s.Address,
			&tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12}, host, s.AppName, s.Timeout.D()), s.MaxBackoff})
	}
	var out auditStreams
	for _, d := range dests {
		s, err := stream.New(stream.Options{Name: d.name, Store: st, Sink: d.sink, Log: log, MaxBackoff: d.maxBackoff.D(),
			Cursor: filepath.Join(cfg.Listen.DataDir, "audit-stream-"+d.name+".cursor")})
		if err != nil {
			return nil, err
		}
		spawn(func() { s.Run(ctx) })
		out = append(out, s)
	}
	return out, nil
}

// drain waits, within ctx, until every destination has every record.
func (a auditStreams) drain(ctx context.Context) error {
	var errs []error
	for _, s := range a {
		errs = append(errs, s.Drain(ctx))
	}
	return errors.Join(errs...)
}

// caPool reads a PEM file of CA certificates; "" means the system roots.
func caPool(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return p, nil
}
