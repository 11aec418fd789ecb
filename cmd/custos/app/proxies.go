package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/dbtoken"
	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/broker/sshca"
	"github.com/custos-pam/custos/protocols/lifecycle"
	pgproxy "github.com/custos-pam/custos/protocols/postgres"
	"github.com/custos-pam/custos/protocols/postgres/masking"
	"github.com/custos-pam/custos/protocols/proxyproto"
	sshproxy "github.com/custos-pam/custos/protocols/ssh"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/web"
)

// errNoVault is what a proxied connection sees when the broker has no
// credential issuer configured.
var errNoVault = errors.New("credentials unavailable: vault is not configured")

// issuerCreds adapts the Vault issuer to both proxies' credentials
// interfaces.
type issuerCreds struct{ issuer *vaultcreds.Issuer }

func (c issuerCreds) SSHSigner(ctx context.Context, g broker.Grant, sessionID string) (ssh.Signer, error) {
	if c.issuer == nil {
		return nil, errNoVault
	}
	cert, err := c.issuer.SSHForSession(ctx, g, sessionID)
	if err != nil {
		return nil, err
	}
	return cert.Signer, nil
}

func (c issuerCreds) PostgresLogin(ctx context.Context, g broker.Grant, sessionID string) (string, string, error) {
	if c.issuer == nil {
		return "", "", errNoVault
	}
	l, err := c.issuer.ForSession(ctx, g, sessionID)
	if err != nil {
		return "", "", err
	}
	return l.Username, l.Password, nil
}

func (c issuerCreds) EndLogin(ctx context.Context, g broker.Grant, sessionID string) error {
	if c.issuer == nil {
		return nil
	}
	return c.issuer.EndSession(ctx, g.ID, sessionID)
}

// proxy is what the broker needs of a wire proxy; both proxies embed
// lifecycle.Core, which provides it.
type proxy interface {
	Serve(ctx context.Context, ln net.Listener) error
	Close() error
	Terminate(sessionID, reason string) error
	TerminateGrant(grantID, reason string) int
	WatchGrants(events <-chan broker.GrantEvent)
}

// proxies are the running wire proxies.
type proxies []proxy

// Terminate ends one live session by id, whichever proxy holds it.
func (ps proxies) Terminate(sessionID, reason string) bool {
	for _, p := range ps {
		if p.Terminate(sessionID, reason) == nil {
			return true
		}
	}
	return false
}

// sshHostKey is the SSH proxy's host key, nil without an SSH listener.
func (ps proxies) sshHostKey() ssh.PublicKey {
	for _, p := range ps {
		if h, ok := p.(interface{ HostKey() ssh.PublicKey }); ok {
			return h.HostKey()
		}
	}
	return nil
}

func (ps proxies) close() {
	for _, p := range ps {
		_ = p.Close()
	}
}

// startProxies starts the listeners named in cfg.Listen; each proxy serves
// until ctx ends or close is called. Refusals of clients that never
// proved who they are go through rejections.
func startProxies(ctx context.Context, cfg *config.Config, live *config.Live, acc *access.Service, dbt *dbtoken.Service,
	issuer *vaultcreds.Issuer, rec *recorder.Recorder, userCA *sshca.CA, auditLog *audit.Log,
	rejections *audit.Throttle, log *slog.Logger, m *metrics.Metrics, serve func(func())) (proxies, *sshproxy.KeyIdentities, error) {
	creds := issuerCreds{issuer}
	// keys are the SSH proxy's user keys, which a config reload replaces.
	var keys *sshproxy.KeyIdentities
	core := lifecycle.Options{Audit: auditLog, Rejections: rejections, Logger: log, SessionSweep: cfg.Listen.SessionSweep.D(),
		Metrics: m, Clock: acc.Clock()}
	if cfg.Listen.ProxyProtocol {
		trusted, err := cfg.Listen.Trusted()
		if err != nil {
			return nil, nil, fmt.Errorf("serve: %w", err)
		}
		core.ProxyProtocol = &proxyproto.Policy{Trusted: trusted}
	}
	// Both record through the recorder, which also serves the live view.
	recording := lifecycle.RecorderFunc(func(ctx context.Context, h event.Header) (lifecycle.Recording, error) {
		w, err := rec.Start(ctx, h)
		if err != nil {
			return nil, err
		}
		return w, nil
	})
	core.Recorder = recording
	newSSH := func() (proxy, error) {
		ids, err := sshproxy.NewKeyIdentities(cfg.Users)
		if err != nil {
			return nil, fmt.Errorf("ssh proxy: %w", err)
		}
		keys = ids
		return sshproxy.New(sshproxy.Options{
			HostKeyFile: filepath.Join(cfg.Listen.DataDir, "ssh_host_ed25519_key"),
			UserCAKeys:  []ssh.PublicKey{userCA.PublicKey()},
			Identities:  ids, Grants: acc, Targets: live, Credentials: creds,
			Options: core,
		})
	}
	newPostgres := func() (proxy, error) {
		var tlsCfg *tls.Config
		if cfg.Listen.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.Listen.TLSCert, cfg.Listen.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("postgres proxy: tls: %w", err)
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		dict, err := dataDictionary(cfg.DataDictionary)
		if err != nil {
			return nil, err
		}
		return pgproxy.New(pgproxy.Options{
			Targets: live, Auth: dbt, Grants: acc, Credentials: creds, TLS: tlsCfg,
			Options: core, DataDictionary: dict,
		})
	}
	var ps proxies
	for _, l := range []struct {
		name, addr string
		build      func() (proxy, error)
	}{
		{"ssh", cfg.Listen.SSH, newSSH},
		{"postgres", cfg.Listen.Postgres, newPostgres},
	} {
		if l.addr == "" {
			continue
		}
		p, err := l.build()
		if err != nil {
			ps.close()
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			_ = p.Close()
			ps.close()
			return nil, nil, fmt.Errorf("%s proxy: listen %s: %w", l.name, l.addr, err)
		}
		ps = append(ps, p)
		serve(func() { _ = p.Serve(ctx, ln) })
		log.Info(l.name+" proxy listening", "addr", ln.Addr().String())
	}
	return ps, keys, nil
}

// httpListener reads a PROXY header on ln's connections from trusted
// proxies when listen.http_proxy_protocol is on.
func httpListener(ln net.Listener, cfg *config.Config) (net.Listener, error) {
	if !cfg.Listen.HTTPProxyProtocol {
		return ln, nil
	}
	trusted, err := cfg.Listen.Trusted()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("serve: %w", err)
	}
	return &proxyproto.Listener{Listener: ln, Policy: &proxyproto.Policy{Trusted: trusted}}, nil
}

// trustProxies makes the HTTP server take the client address from
// listen.forwarded_header of requests from listen.trusted_proxies.
func trustProxies(srv *web.Server, cfg *config.Config) error {
	trusted, err := cfg.Listen.Trusted()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := srv.TrustProxies(trusted, cfg.Listen.Forwarded()); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// dataDictionary compiles the masking dictionary; without a hash_key the
// hash action gets a random key (config validation refuses roles that
// hash without one).
func dataDictionary(d config.DataDictionary) (*masking.Dictionary, error) {
	var key []byte
	if d.HashKey.IsSet() {
		v, err := d.HashKey.Resolve()
		if err != nil {
			return nil, fmt.Errorf("data_dictionary.hash_key: %w", err)
		}
		key = []byte(v)
	} else {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("data dictionary key: %w", err)
		}
	}
	return masking.Compile(d, key)
}
