package app

import (
	"context"
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
	"github.com/custos-pam/custos/broker/sshca"
	pgproxy "github.com/custos-pam/custos/protocols/postgres"
	sshproxy "github.com/custos-pam/custos/protocols/ssh"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
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

// sshAudit adapts the audit log to the SSH proxy's auditor.
type sshAudit struct{ log *audit.Log }

func (a sshAudit) Audit(ctx context.Context, e sshproxy.AuditEntry) error {
	_, err := a.log.Append(ctx, audit.Entry{Actor: e.Actor, Action: e.Action, Target: e.Target,
		Outcome: e.Outcome, Reason: e.Reason, Details: e.Details})
	return err
}

// proxies are the running wire proxies; nil fields are switched off.
type proxies struct {
	ssh *sshproxy.Proxy
	pg  *pgproxy.Proxy
}

// terminateGrant closes every live session on an ended grant.
func (p proxies) terminateGrant(id, reason string) {
	if p.ssh != nil {
		p.ssh.TerminateGrant(id, reason)
	}
	if p.pg != nil {
		p.pg.TerminateGrant(id, reason)
	}
}

// Terminate ends one live session by id, whichever proxy holds it.
func (p proxies) Terminate(sessionID, reason string) bool {
	if p.ssh != nil && p.ssh.Terminate(sessionID, reason) == nil {
		return true
	}
	return p.pg != nil && p.pg.Terminate(sessionID, reason)
}

func (p proxies) close() {
	if p.ssh != nil {
		_ = p.ssh.Close()
	}
	if p.pg != nil {
		_ = p.pg.Close()
	}
}

// startProxies starts the listeners named in cfg.Listen; each proxy serves
// until ctx ends or close is called.
func startProxies(ctx context.Context, cfg *config.Config, acc *access.Service, dbt *dbtoken.Service,
	issuer *vaultcreds.Issuer, rec *recorder.Recorder, userCA *sshca.CA, auditLog *audit.Log, log *slog.Logger, serve func(func())) (proxies, error) {
	var p proxies
	creds := issuerCreds{issuer}
	if cfg.Listen.SSH != "" {
		ids, err := sshproxy.NewKeyIdentities(cfg.Users)
		if err != nil {
			return p, fmt.Errorf("ssh proxy: %w", err)
		}
		p.ssh, err = sshproxy.New(sshproxy.Options{
			HostKeyFile: filepath.Join(cfg.Listen.DataDir, "ssh_host_ed25519_key"),
			UserCAKeys:  []ssh.PublicKey{userCA.PublicKey()},
			Identities:  ids, Grants: acc, Targets: cfg, Credentials: creds,
			Recorder: sshproxy.RecorderFunc(func(ctx context.Context, h event.Header) (sshproxy.Recording, error) {
				w, err := rec.Start(ctx, h)
				if err != nil {
					return nil, err
				}
				return w, nil
			}),
			Audit: sshAudit{auditLog}, Log: log.With("proxy", "ssh"),
		})
		if err != nil {
			return p, fmt.Errorf("ssh proxy: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.Listen.SSH)
		if err != nil {
			p.close()
			return p, fmt.Errorf("ssh proxy: listen %s: %w", cfg.Listen.SSH, err)
		}
		serve(func() { _ = p.ssh.Serve(ctx, ln) })
		log.Info("ssh proxy listening", "addr", ln.Addr().String())
	}
	if cfg.Listen.Postgres != "" {
		var tlsCfg *tls.Config
		if cfg.Listen.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.Listen.TLSCert, cfg.Listen.TLSKey)
			if err != nil {
				p.close()
				return p, fmt.Errorf("postgres proxy: tls: %w", err)
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		var err error
		p.pg, err = pgproxy.New(pgproxy.Options{
			Targets: cfg, Auth: dbt, Credentials: creds, Audit: auditLog, TLS: tlsCfg,
			Recorder: pgRecorder{rec: rec}, Logger: log.With("proxy", "postgres"),
		})
		if err != nil {
			p.close()
			return p, fmt.Errorf("postgres proxy: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.Listen.Postgres)
		if err != nil {
			p.close()
			return p, fmt.Errorf("postgres proxy: listen %s: %w", cfg.Listen.Postgres, err)
		}
		serve(func() { _ = p.pg.Serve(ctx, ln) })
		log.Info("postgres proxy listening", "addr", ln.Addr().String())
	}
	return p, nil
}

// pgRecorder adapts the recorder to the PostgreSQL proxy.
type pgRecorder struct {
	rec *recorder.Recorder
}

func (r pgRecorder) Start(ctx context.Context, h event.Header) (pgproxy.Recording, error) {
	w, err := r.rec.Start(ctx, h)
	if err != nil {
		return nil, err
	}
	return w, nil
}
