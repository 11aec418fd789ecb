// Package config owns custos.yaml: the plain structs the broker runs from,
// loading with secret references (env:NAME, file:/path), duration parsing
// and Validate, which reports every problem with its YAML path.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole of custos.yaml.
type Config struct {
	// Listen holds the broker's listeners.
	Listen Listen `yaml:"listen"`
	// PublicURL is the broker's externally reachable base URL, used in
	// links (Slack messages, CLI hints). Default: http(s)://<listen.http>.
	PublicURL string `yaml:"public_url"`
	// Store selects the state store. Default: SQLite at ./custos.db.
	Store Store `yaml:"store"`
	// Recording configures where and how sessions are recorded.
	Recording Recording `yaml:"recording"`
	// Audit configures the audit log's signed checkpoints.
	Audit Audit `yaml:"audit"`
	// Vault configures the credential issuer. Default: none (connecting
	// through the proxies then fails with "credentials unavailable").
	Vault Vault `yaml:"vault"`
	// Slack configures Slack approvals. Default: off.
	Slack Slack `yaml:"slack"`
	// Auth configures user authentication and tokens.
	Auth Auth `yaml:"auth"`
	// Users are the identities that may sign in.
	Users []User `yaml:"users"`
	// Identity configures single sign-on. Default: local users only.
	Identity Identity `yaml:"identity"`
	// Groups name sets of users for policy.
	Groups []Group `yaml:"groups"`
	// SecurityAdmins lists groups whose members may see every session,
	// terminate sessions and revoke any grant. Default: none.
	SecurityAdmins []string `yaml:"security_admins"`
	// Targets are the databases and hosts Custos brokers access to.
	Targets []Target `yaml:"targets"`
	// BreakGlass are the sealed emergency accounts. Default: none.
	BreakGlass []BreakGlassAccount `yaml:"breakglass"`
	// Backup configures backups and restore drills.
	Backup Backup `yaml:"backup"`
	// Notify configures the grant-ending notice.
	Notify Notify `yaml:"notify"`
	// DataDictionary classifies database columns for masking. Default:
	// empty (nothing is masked).
	DataDictionary DataDictionary `yaml:"data_dictionary"`
	// Reviews configures periodic access reviews.
	Reviews Reviews `yaml:"reviews"`
	// Indicators configures the risk indicators and their limits.
	Indicators Indicators `yaml:"indicators"`
	// Signatures configures electronic signatures. Default: the default
	// meanings; no role requires a signature.
	Signatures Signatures `yaml:"signatures"`
}

// Listen holds listener addresses. Empty means the listener is off, except
// HTTP which defaults to 127.0.0.1:8080.
type Listen struct {
	// HTTP serves the API, web UI, health and metrics. Default: 127.0.0.1:8080.
	HTTP string `yaml:"http"`
	// SSH is the SSH proxy listener, e.g. ":2222". Default: off.
	SSH string `yaml:"ssh"`
	// Postgres is the PostgreSQL proxy listener, e.g. ":6432". Default: off.
	Postgres string `yaml:"postgres"`
	// TLSCert and TLSKey are PEM files for HTTPS and the PostgreSQL
	// proxy's TLS. Default: none (plain HTTP; the PostgreSQL proxy then
	// refuses to start when TLS is required).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MetricsToken is the bearer token /metrics asks for (a secret
	// reference is allowed). Default: none, and /metrics answers loopback
	// callers only.
	MetricsToken Secret `yaml:"metrics_token"`
	// Pprof serves Go runtime profiles under /api/v1/debug/pprof/ to
	// security admins (docs/performance.md). Default: false (404).
	Pprof bool `yaml:"pprof"`
	// InsecureHTTP allows plain HTTP on an address other than loopback
	// when no TLSCert is set, for a broker behind a TLS-terminating proxy
	// on the same host or network. Without it such a config is refused:
	// sign-in passwords and tokens would cross the network in the clear
	// and web session cookies lose Secure. Default: false.
	InsecureHTTP bool `yaml:"insecure_http"`
	// DataDir holds the broker's own keys (SSH host key, user CA, recording
	// signing key) and the recording spool. Default: ./custos-data.
	DataDir string `yaml:"data_dir"`
	// SessionSweep is how often the proxies re-check the grant of every
	// live session on this broker against the store, by its ID, and end
	// those no longer active. Grant events end sessions at once; the
	// sweep bounds how long a missed event (another broker's, while the
	// PostgreSQL store's listening connection was down) keeps a session
	// going. Default: 5s; between 1s and 5m.
	SessionSweep Duration `yaml:"session_sweep"`
	// TrustedProxies are the load balancers and reverse proxies (CIDR
	// prefixes or addresses) whose word on a client's address is
	// believed: their PROXY protocol header (ProxyProtocol) on the SSH
	// and PostgreSQL listeners, their X-Forwarded-For or Forwarded
	// header on HTTP. Anyone else's is ignored (HTTP) or refused (PROXY
	// header). Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ProxyProtocol makes the SSH and PostgreSQL listeners require a
	// PROXY protocol header (version 1 or 2) from every connection of a
	// TrustedProxies address, and refuse a header from any other
	// address; clients that connect directly still can. Default: false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// HTTPProxyProtocol does the same for the HTTP listener, for a TCP
	// balancer that passes HTTPS through (TLS ends at the broker) and so
	// cannot set ForwardedHeader. Default: false.
	HTTPProxyProtocol bool `yaml:"http_proxy_protocol"`
	// ForwardedHeader is the header the trusted proxies in front of the
	// HTTP listener name the client with: "X-Forwarded-For" or
	// "Forwarded" (RFC 7239). Only that one is read, so a client cannot
	// slip in the other. Default: X-Forwarded-For.
	ForwardedHeader string `yaml:"forwarded_header"`
	// AdvertiseURL is where the other replicas sharing the store reach
	// this broker's HTTP listener, to forward the live view and
	// terminate requests of sessions it runs. Default: the http listener
	// with https when tls_cert is set, the host name standing in for an
	// address that listens everywhere.
	AdvertiseURL string `yaml:"advertise_url"`
}

// DefaultSessionSweep is listen.session_sweep's default.
const DefaultSessionSweep = 5 * time.Second

// Store selects the state store.
type Store struct {
	// Driver is "sqlite" or "postgres". Default: "sqlite".
	Driver string `yaml:"driver"`
	// Path is the SQLite database file. Default: <data_dir>/custos.db.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (a secret reference is
	// allowed). Required when Driver is "postgres".
	DSN Secret `yaml:"dsn"`
}

// Group is a named set of users.
type Group struct {
	Name    string   `yaml:"name"`
	Members []string `yaml:"members"`
}

// Load reads and parses a config file, applies defaults and validates it.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse parses YAML, rejecting unknown fields, applies defaults and
// validates the result.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
