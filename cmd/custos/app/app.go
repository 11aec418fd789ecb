// Package app assembles a running broker from its config: the state store,
// audit log, services, proxies and the HTTP server, started and stopped in
// a fixed order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store"
	"github.com/custos-pam/custos/web"
)

// shutdownGrace bounds how long in-flight HTTP requests may take after a
// shutdown signal.
const shutdownGrace = 10 * time.Second

// Run runs the broker until ctx ends, then shuts down gracefully.
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

	dir, err := identity.NewDirectory(cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ids, err := identity.NewService(identity.Options{Auth: cfg.Auth, Directory: dir, Store: st, Audit: auditLog, Log: log})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	acc := access.New(access.Options{Config: cfg, Directory: dir, Store: st, Audit: auditLog, Log: log})

	srv := web.New(log, nil)
	srv.AddCheck("store", st.Ping)
	(&web.AccessAPI{Auth: ids, Access: acc, Log: log}).Register(srv)
	(&web.AuditAPI{Auth: ids, Store: st, IsSecurityAdmin: dir.IsSecurityAdmin}).Register(srv)

	// Background work stops before the store closes.
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	wg.Go(func() { acc.RunScheduler(bg) })

	ln, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
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
	log.Info("custos broker started", "http", ln.Addr().String(), "store", cfg.Store.Driver)
	_, _ = auditLog.Append(ctx, audit.Entry{Actor: "system", Action: "broker.start", Outcome: broker.OutcomeSuccess})

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("serve: http: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = httpSrv.Shutdown(sctx)
	_, _ = auditLog.Append(sctx, audit.Entry{Actor: "system", Action: "broker.stop", Outcome: broker.OutcomeSuccess})
	return nil
}
