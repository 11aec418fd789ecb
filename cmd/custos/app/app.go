// Package app assembles a running broker from its config: the state store,
// audit log, identities, access lifecycle, credential issuer, recorder,
// proxies and the HTTP server, started and stopped in a fixed order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	slackapprovals "github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/dbtoken"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/sshca"
	"github.com/custos-pam/custos/broker/store"
	"github.com/custos-pam/custos/web"
	webui "github.com/custos-pam/custos/web/ui"
)

// shutdownGrace bounds how long in-flight HTTP requests may take after a
// shutdown signal.
const shutdownGrace = 10 * time.Second

// Run runs the broker until ctx ends, then shuts down in this order: stop
// accepting HTTP and proxy connections, end live sessions, seal and upload
// their recordings, stop background work, close the store.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.Listen.DataDir, 0o700); err != nil {
		return fmt.Errorf("serve: data dir: %w", err)
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer st.Close()
	auditLog := audit.NewLog(st)
	// Refusals anyone can provoke without credentials (forged Slack
	// requests, bad bearer tokens, rate-limited sign-ins) are recorded a
	// few per source address and minute, the rest summarized.
	rejections := audit.NewThrottle(auditLog, audit.ThrottleOptions{Log: log})

	dir, err := identity.NewDirectory(cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ids, err := identity.NewService(identity.Options{Auth: cfg.Auth, Directory: dir, Store: st, Audit: auditLog,
		Rejections: rejections, Log: log})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	acc := access.New(access.Options{Config: cfg, Directory: dir, Store: st, Audit: auditLog, Log: log})
	dbt := dbtoken.New(ids.Tokens(), acc, cfg.Auth.DBTokenTTL.D())

	srv := web.New(log, nil)
	srv.AddCheck("store", st.Ping)

	// Background work stops before the store closes.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	wg.Go(func() { acc.RunScheduler(bg) })
	wg.Go(func() { rejections.Run(bg) })
	wg.Go(func() { ids.Run(bg) }) // purges long-expired tokens

	var (
		vc     *vaultcreds.Client
		issuer *vaultcreds.Issuer
	)
	if cfg.Vault.Address != "" {
		if vc, err = vaultcreds.New(cfg.Vault, log); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		if issuer, err = vaultcreds.NewIssuer(vaultcreds.Options{Client: vc, Config: cfg, Store: st, Audit: auditLog, Log: log}); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		srv.AddCheck("vault", vc.Health)
		wg.Go(func() { vc.Run(bg) })
		wg.Go(func() { _ = issuer.Run(bg) })
	}

	var vapi *vaultapi.Client
	if vc != nil {
		vapi = vc.API()
	}
	rec, err := NewRecorder(ctx, cfg, vapi, RecorderDeps{Audit: auditLog, Index: broker.SessionIndex{Store: st}, Logger: log})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv.AddCheck("recordings", func(context.Context) error { return rec.Ready() })

	userCA, err := sshca.LoadOrCreate(filepath.Join(cfg.Listen.DataDir, "ssh_user_ca"))
	if err != nil {
		_ = rec.Close()
		return fmt.Errorf("serve: %w", err)
	}
	px, err := startProxies(bg, cfg, acc, dbt, issuer, rec, userCA, auditLog, log, func(f func()) { wg.Go(f) })
	if err != nil {
		_ = rec.Close()
		return fmt.Errorf("serve: %w", err)
	}
	// Grant changes from this broker and, on PostgreSQL, from every
	// replica end live sessions at once.
	events := st.GrantEvents(bg)
	wg.Go(func() {
		for ev := range events {
			if ev.State != broker.GrantActive {
				px.terminateGrant(ev.GrantID, revokeMessage(ev))
			}
		}
	})

	var notify securityNotifier
	if cfg.Slack.Enabled {
		sl, err := slackapprovals.New(slackapprovals.Options{Config: cfg.Slack, PublicURL: cfg.PublicURL,
			Targets: cfg.Targets, Access: acc, Directory: dir, Store: st, Audit: auditLog, Rejections: rejections, Log: log})
		if err != nil {
			px.close()
			_ = rec.Close()
			return fmt.Errorf("serve: %w", err)
		}
		acc.AddNotifier(sl)
		sl.Register(srv)
		wg.Go(func() { _ = sl.Run(bg) })
		notify = sl
	}
	bgSvc, err := startBreakGlass(bg, cfg, st, auditLog, dir, acc, issuer, rec, notify, ids, srv, log, func(f func()) { wg.Go(f) })
	if err != nil {
		px.close()
		_ = rec.Close()
		return fmt.Errorf("serve: break-glass: %w", err)
	}

	(&web.AccessAPI{Auth: ids, Access: acc, Log: log}).Register(srv)
	(&web.AuditAPI{Auth: ids, Store: st, IsSecurityAdmin: dir.IsSecurityAdmin}).Register(srv)
	pgHost, pgPort := proxyHostPort(cfg)
	(&web.DBAPI{Auth: ids, Tokens: dbt, Host: pgHost, Port: pgPort, Database: func(target string) string {
		if t, ok := cfg.FindTarget(target); ok {
			return t.Postgres.Database
		}
		return ""
	}}).Register(srv)
	(&web.SSHCertAPI{Auth: ids, CA: userCA, TTL: cfg.Auth.SSHCertTTL.D(), Audit: auditLog}).Register(srv)
	(&web.SessionsAPI{Auth: ids, Store: st, Recorder: rec, Terminator: px, Audit: auditLog,
		IsSecurityAdmin: dir.IsSecurityAdmin}).Register(srv)

	ui, err := webui.New(webui.Options{Auth: ids, Tokens: ids.Tokens(), Access: acc, Store: st, Audit: auditLog,
		Config: cfg, Live: webui.NewHub(rec), Terminator: px, Recordings: rec, BreakGlass: bgSvc, PublicURL: cfg.PublicURL,
		SessionTTL: cfg.Auth.WebSessionTTL.D(), InsecureCookies: cfg.Listen.TLSCert == "", Log: log})
	if err != nil {
		px.close()
		_ = rec.Close()
		return fmt.Errorf("serve: %w", err)
	}
	ui.Register(srv)

	ln, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
		px.close()
		_ = rec.Close()
		return fmt.Errorf("serve: listen %s: %w", cfg.Listen.HTTP, err)
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		var err error
		if cfg.Listen.TLSCert != "" {
			err = httpSrv.ServeTLS(ln, cfg.Listen.TLSCert, cfg.Listen.TLSKey)
		} else {
			err = httpSrv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("custos broker started", "http", ln.Addr().String(), "store", cfg.Store.Driver,
		"recordings", cfg.Recording.Store, "vault", cfg.Vault.Address != "")
	_, _ = auditLog.Append(ctx, audit.Entry{Actor: "system", Action: "broker.start", Outcome: broker.OutcomeSuccess})

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		runErr = fmt.Errorf("serve: http: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = httpSrv.Shutdown(sctx)
	px.close()
	if err := rec.Drain(sctx); err != nil {
		log.Warn("recordings not fully uploaded at shutdown; they stay spooled and upload on next start", "err", err)
	}
	_ = rec.Close()
	if err := rejections.Close(sctx); err != nil {
		log.Error("audit summaries not appended at shutdown", "err", err)
	}
	_, _ = auditLog.Append(sctx, audit.Entry{Actor: "system", Action: "broker.stop", Outcome: broker.OutcomeSuccess})
	return runErr
}

// revokeMessage is what a user sees when their session is ended by a grant
// change.
func revokeMessage(ev broker.GrantEvent) string {
	switch {
	case ev.State == broker.GrantExpired:
		return "grant expired"
	case ev.Reason != "":
		return "grant revoked: " + ev.Reason
	default:
		return "grant " + string(ev.State)
	}
}

// proxyHostPort is where clients reach the PostgreSQL proxy: the public
// URL's host and the listener's port.
func proxyHostPort(cfg *config.Config) (string, string) {
	host, port, _ := net.SplitHostPort(cfg.Listen.Postgres)
	if u := cfg.PublicURL; u != "" {
		u = u[strings.Index(u, "://")+3:]
		if i := strings.IndexAny(u, ":/"); i >= 0 {
			u = u[:i]
		}
		host = u
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return host, port
}
