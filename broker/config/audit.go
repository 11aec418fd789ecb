package config

import (
	"net"
	"net/url"
	"time"
)

// Audit configures the audit log's checkpoints and its streaming to a
// SIEM.
type Audit struct {
	// CheckpointInterval is how often the broker writes a signed
	// checkpoint of the audit chain's head into the recordings object
	// store (besides at start, at shutdown and whenever a recording is
	// sealed). Between two checkpoints the chain is protected only by its
	// hashes. Default: 5m; at least 1s.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// Stream sends every audit record to a webhook and/or a syslog
	// server. Default: no streaming.
	Stream AuditStream `yaml:"stream"`
}

// AuditStream names where audit records are streamed. Each destination
// gets every record in seq order, at least once; a destination's cursor
// (the last seq it accepted) is kept in <data_dir>/audit-stream-<name>.cursor.
type AuditStream struct {
	// Webhook receives each record as a signed HTTP POST. Default: off.
	Webhook *AuditWebhook `yaml:"webhook"`
	// Syslog receives each record as an RFC 5424 message over TLS
	// (RFC 5425 framing). Default: off.
	Syslog *AuditSyslog `yaml:"syslog"`
}

// AuditWebhook is an HTTPS endpoint receiving audit records.
type AuditWebhook struct {
	// URL is the endpoint; https is required unless the host is loopback.
	// Required.
	URL string `yaml:"url"`
	// Secret signs each request with HMAC-SHA256 (a secret reference is
	// allowed). Required.
	Secret Secret `yaml:"secret"`
	// CACert is a PEM file of CAs trusted for the endpoint's certificate.
	// Default: the system roots.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds one delivery attempt. Default: 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxBackoff caps the wait between retries of a record. Default: 1m.
	MaxBackoff Duration `yaml:"max_backoff"`
}

// AuditSyslog is a syslog server receiving audit records over TLS.
type AuditSyslog struct {
	// Address is the server's host:port (6514 is the registered port).
	// Required.
	Address string `yaml:"address"`
	// CACert is a PEM file of CAs trusted for the server's certificate.
	// Default: the system roots.
	CACert string `yaml:"ca_cert"`
	// ServerName is the name the server's certificate is checked against.
	// Default: Address's host.
	ServerName string `yaml:"server_name"`
	// AppName is the RFC 5424 APP-NAME. Default: custos.
	AppName string `yaml:"app_name"`
	// Timeout bounds dialing and writing one record. Default: 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxBackoff caps the wait between retries of a record. Default: 1m.
	MaxBackoff Duration `yaml:"max_backoff"`
}

// DefaultCheckpointInterval is audit.checkpoint_interval's default.
const DefaultCheckpointInterval = 5 * time.Minute

func (c *Config) validateAudit(ck *checker) {
	if c.Audit.CheckpointInterval.D() < time.Second {
		ck.add("audit.checkpoint_interval", "must be at least 1s")
	}
	if w := c.Audit.Stream.Webhook; w != nil {
		u, err := url.Parse(w.URL)
		switch {
		case w.URL == "":
			ck.add("audit.stream.webhook.url", "is required")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			ck.add("audit.stream.webhook.url", "must be an absolute http(s) URL")
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			ck.add("audit.stream.webhook.url", "must be https unless the host is loopback")
		case u.User != nil || u.RawQuery != "":
			ck.add("audit.stream.webhook.url", "must not carry credentials or a query string; use secret")
		}
		if !w.Secret.IsSet() {
			ck.add("audit.stream.webhook.secret", "is required")
		}
		if w.Timeout.D() < 0 || w.MaxBackoff.D() < 0 {
			ck.add("audit.stream.webhook", "timeout and max_backoff must not be negative")
		}
	}
	if s := c.Audit.Stream.Syslog; s != nil {
		if _, port, err := net.SplitHostPort(s.Address); err != nil || port == "" {
			ck.add("audit.stream.syslog.address", "must be host:port")
		}
		if s.Timeout.D() < 0 || s.MaxBackoff.D() < 0 {
			ck.add("audit.stream.syslog", "timeout and max_backoff must not be negative")
		}
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
