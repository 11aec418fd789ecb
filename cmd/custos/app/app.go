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
	"github.com/custos-pam/custos/broker/metrics"
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
	return RunWithReload(ctx, cfg, "", nil, log)
}

// RunWithReload is Run that also reads the config file at path again on
// each value from hup (SIGHUP) and applies what can change while running
// (see reload.go).
func RunWithReload(ctx context.Context, cfg *config.Config, path string, hup <-chan os.Signal, log *slog.Logger) error {
	r := &run{log: log}
	err := r.start(ctx, cfg)
	if err == nil {
		log.Info("custos broker started", "http", r.httpAddr, "store", cfg.Store.Driver,
			"recordings", cfg.Recording.Store, "vault", cfg.Vault.Address != "")
		_, _ = r.audit.Append(ctx, audit.Entry{Actor: "system", Action: "broker.start", Outcome: broker.OutcomeSuccess})
		r.started = true
	serving:
		for {
			select {
			case <-ctx.Done():
				break serving
			case herr := <-r.httpErr:
				err = fmt.Errorf("serve: http: %w", herr)
				break serving
			case <-hup:
				r.reload.fromFile(ctx, path)
			}
		}
		log.Info("shutting down")
	}
	r.stop()
	return err
}

// run is a broker being started or running: each part started pushes how
// to stop it, and stop pops them, so a start that fails half-way undoes
// exactly what it did.
type run struct {
	log      *slog.Logger
	closers  []closer
	audit    *audit.Log
	started  bool
	httpAddr string
	httpErr  chan error
	// reload applies a re-read config to the running parts.
	reload *reloader
}

// closer stops one part; ctx bounds the whole shutdown.
type closer struct {
	name string
	stop func(ctx context.Context) error
}

// onStop pushes a closer.
func (r *run) onStop(name string, stop func(ctx context.Context) error) {
	r.closers = append(r.closers, closer{name, stop})
}

// stop runs the closers, last pushed first, within shutdownGrace.
func (r *run) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for i := len(r.closers) - 1; i >= 0; i-- {
		if err := r.closers[i].stop(ctx); err != nil {
			r.log.Warn("shutdown: "+r.closers[i].name, "err", err)
		}
	}
}

// start opens the store, starts the services, proxies and the HTTP server.
func (r *run) start(ctx context.Context, cfg *config.Config) error {
	log := r.log
	// Checked again here, before anything opens, for configs built
	// without Validate.
	if err := cfg.Listen.CheckPlaintext(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := os.MkdirAll(cfg.Listen.DataDir, 0o700); err != nil {
		return fmt.Errorf("serve: data dir: %w", err)
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	r.onStop("store", func(context.Context) error { return st.Close() })
	srv := web.New(log, nil)
	m, err := metrics.New(srv.Registry())
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv.SetMetrics(m)
	auditLog := audit.NewLog(st)
	auditLog.CountAppends(m)
	r.audit = auditLog
	// Refusals anyone can provoke without credentials (forged Slack
	// requests, bad bearer tokens, rate-limited sign-ins) are recorded a
	// few per source address and minute, the rest summarized.
	rejections := audit.NewThrottle(auditLog, audit.ThrottleOptions{Log: log, Store: st})

	dir, err := identity.NewDirectory(cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	sso, err := newSSO(cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ids, err := identity.NewService(identity.Options{Auth: cfg.Auth, Directory: dir, Store: st, Audit: auditLog,
		Rejections: rejections, SSO: sso, Audience: tokenAudience(cfg), Log: log})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	live := config.NewLive(cfg)
	r.reload = &reloader{live: live, dir: dir, ids: ids, audit: auditLog, log: log}
	acc := access.New(access.Options{Config: cfg, Live: live, Directory: dir, Store: st, Audit: auditLog, Log: log, Metrics: m, Clock: newClock()})
	r.reload.acc = acc
	signer := newSigner(live, ids, acc)
	dbt := dbtoken.New(ids.Tokens(), acc, cfg.Auth.DBTokenTTL.D())
	// SSO users signed in before this start keep their access.
	if _, err := ids.LoadSSOUsers(ctx); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// SCIM users too (scim.go); it serves /scim/v2 when configured.
	if err := startSCIM(ctx, cfg, srv, ids, acc, rejections, log); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := deprovision(ctx, ids, acc, log); err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	srv.AddCheck("store", st.Ping)
	if cfg.Listen.MetricsToken.IsSet() {
		tok, err := cfg.Listen.MetricsToken.Resolve()
		if err != nil {
			return fmt.Errorf("serve: listen.metrics_token: %w", err)
		}
		srv.ProtectMetrics(tok)
	}
	if err := trustProxies(srv, cfg); err != nil {
		return err
	}

	// Background work stops before the store closes.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	r.onStop("background work", func(context.Context) error { stopBG(); wg.Wait(); return nil })
	wg.Go(func() { acc.RunScheduler(bg) })
	wg.Go(func() { rejections.Run(bg) })
	wg.Go(func() { ids.Run(bg) }) // purges long-expired tokens
	// Audit records stream to the SIEM destinations in the background. At
	// shutdown they get a few seconds to send the last records (down to
	// broker.stop) before they stop; what is left goes on the next start.
	streamCtx, stopStreams := context.WithCancel(context.WithoutCancel(ctx))
	var streamWG sync.WaitGroup
	streams, err := startAuditStreams(streamCtx, cfg, st, log, func(f func()) { streamWG.Go(f) })
	r.onStop("audit streams", func(ctx context.Context) error {
		defer streamWG.Wait()
		defer stopStreams()
		if !r.started {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, auditStreamDrain)
		defer cancel()
		return streams.drain(ctx)
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// The last checkpoint of the audit chain comes after broker.stop.
	var checkpoints *auditCheckpoints
	r.onStop("audit checkpoint", func(ctx context.Context) error {
		if checkpoints != nil && r.started {
			checkpoints.final(ctx, log)
		}
		return nil
	})
	r.onStop("broker.stop audit", func(ctx context.Context) error {
		if !r.started {
			return nil
		}
		_, err := auditLog.Append(ctx, audit.Entry{Actor: "system", Action: "broker.stop", Outcome: broker.OutcomeSuccess})
		return err
	})
	r.onStop("audit summaries", rejections.Close)

	var (
		vc     *vaultcreds.Client
		issuer *vaultcreds.Issuer
		vapi   *vaultapi.Client
	)
	if cfg.Vault.Address != "" {
		if vc, err = vaultcreds.New(cfg.Vault, log); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		vc.Observe(m)
		if issuer, err = vaultcreds.NewIssuer(vaultcreds.Options{Client: vc, Config: cfg, Live: live, Store: st, Audit: auditLog, Log: log,
			Clock: acc.Clock()}); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		srv.AddCheck("vault", vc.Health)
		wg.Go(func() { vc.Run(bg) })
		wg.Go(func() { _ = issuer.Run(bg) })
		vapi = vc.API()
	}

	// The audit chain is checkpointed into the recordings bucket, at
	// once whenever a recording is sealed.
	checkpoints, err = startAuditCheckpoints(bg, cfg, st, log, func(f func()) { wg.Go(f) })
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	rec, err := NewRecorder(ctx, cfg, vapi, RecorderDeps{Audit: checkpoints.sealed(auditLog),
		Index: replicaIndex{broker.SessionIndex{Store: st}, cfg.Listen.AdvertiseURL}, Logger: log})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	r.onStop("recordings", func(ctx context.Context) error {
		if err := rec.Drain(ctx); err != nil {
			log.Warn("recordings not fully uploaded at shutdown; they stay spooled and upload on next start", "err", err)
		}
		return rec.Close()
	})
	srv.AddCheck("recordings", func(context.Context) error { return rec.Ready() })
	if err := srv.Registry().Register(newStateCollector(st, rec, log.Warn)); err != nil {
		return fmt.Errorf("serve: metrics: %w", err)
	}

	userCA, err := sshca.LoadOrCreate(filepath.Join(cfg.Listen.DataDir, "ssh_user_ca"))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	gr := newGuardrailWiring(log)
	px, sshKeys, err := startProxies(bg, cfg, live, acc, dbt, issuer, rec, userCA, auditLog, rejections, log, m, func(f func()) { wg.Go(f) }, gr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	r.onStop("proxies", func(context.Context) error { px.close(); return nil })
	r.reload.sshKeys = sshKeys
	// Grant changes from this broker and, on PostgreSQL, from every
	// replica end live sessions at once; after events may have been
	// missed (a resync) each proxy re-checks every live session's grant,
	// as it also does every listen.session_sweep.
	for _, p := range px {
		events := st.GrantEvents(bg)
		wg.Go(func() { p.WatchGrants(events) })
	}

	var notify securityNotifier
	if cfg.Slack.Enabled {
		sl, err := slackapprovals.New(slackapprovals.Options{Config: cfg.Slack, PublicURL: cfg.PublicURL,
			Targets: cfg.Targets, Access: acc, Directory: dir, Store: st, Audit: auditLog, Rejections: rejections, Log: log,
			Holds: gr.holds, HoldAccess: acc})
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		acc.AddNotifier(sl)
		r.reload.slack = sl
		if h := sl.Handler(); h != nil {
			srv.Handle(slackapprovals.InteractionPath, h)
		}
		wg.Go(func() { _ = sl.Run(bg) })
		notify = sl
		gr.notices.attach(sl)
	}
	bgSvc, err := startBreakGlass(bg, cfg, st, auditLog, dir, acc, issuer, rec, notify, srv, log, func(f func()) { wg.Go(f) })
	if err != nil {
		return fmt.Errorf("serve: break-glass: %w", err)
	}
	stepUp, err := newStepUp(cfg, st, auditLog, dir, log)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if pk := stepUp.Passkeys(); pk != nil {
		ids.SetPasskeys(pk) // users' factors (custos users, the second-factor indicators)
	}
	indicators, err := startIndicators(bg, cfg, live, dir, ids, st, auditLog, bgSvc, rec, notify, srv, log, func(f func()) { wg.Go(f) })
	if err != nil {
		return fmt.Errorf("serve: indicators: %w", err)
	}

	reviews, err := startReviews(live, dir, signer, st, auditLog, srv, log)
	if err != nil {
		return fmt.Errorf("serve: access reviews: %w", err)
	}
	bgSvc.SetSigner(signer)
	if err := enablePasskeySigning(cfg, signer, stepUp, bgSvc); err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	pgHost, pgPort := proxyHostPort(cfg, cfg.Listen.Postgres)
	sshHost, sshPort := proxyHostPort(cfg, cfg.Listen.SSH)
	hub := webui.NewHub(rec)
	fwd, err := newForwarder(cfg, log)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	api, err := web.NewAPI(web.Options{Auth: ids, Tokens: ids.Tokens(), Access: acc, Store: st, Audit: auditLog,
		StepUp: stepUp, Passkeys: stepUp.Passkeys(), TOTP: identity.StoreTOTP{Store: st, Audit: auditLog, Dir: dir},
		AuditVerifier: checkpoints.verifier, Config: cfg, LiveConfig: live, Recordings: rec, Terminator: px, Live: hub, Forwarder: fwd,
		BreakGlass: bgSvc, SSO: ids, Users: ids, Holds: gr.holds, Reviews: reviews, Indicators: indicators, Signatures: signer, DBTokens: dbt, DBHost: pgHost, DBPort: pgPort, SSHCA: userCA,
		SSHHost: sshHost, SSHPort: sshPort, SSHHostKey: px.sshHostKey(),
		SSHCertTTL: cfg.Auth.SSHCertTTL.D(), PublicURL: cfg.PublicURL, SessionTTL: cfg.Auth.WebSessionTTL.D(),
		InsecureCookies: plainCookies(cfg), Log: log})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	api.Register(srv)
	ui, err := webui.New(webui.Options{API: api, Audit: auditLog, Recordings: rec, Live: hub,
		InsecureCookies: plainCookies(cfg), Log: log})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ui.Register(srv)

	ln, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("serve: listen %s: %w", cfg.Listen.HTTP, err)
	}
	if ln, err = httpListener(ln, cfg); err != nil {
		return err
	}
	httpSrv := newHTTPServer(srv.Handler(), httpIdleTimeout)
	r.onStop("http", httpSrv.Shutdown)
	r.httpAddr, r.httpErr = ln.Addr().String(), make(chan error, 1)
	go func() {
		var err error
		if cfg.Listen.TLSCert != "" {
			err = httpSrv.ServeTLS(ln, cfg.Listen.TLSCert, cfg.Listen.TLSKey)
		} else {
			err = httpSrv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			r.httpErr <- err
		}
	}()
	return nil
}

// plainCookies reports whether browsers reach the broker over plain HTTP:
// no certificate of its own and no https public_url of a TLS-terminating
// proxy in front. Only then do cookies go without Secure.
func plainCookies(cfg *config.Config) bool {
	return cfg.Listen.TLSCert == "" && !strings.HasPrefix(strings.ToLower(cfg.PublicURL), "https://")
}

// proxyHostPort is where clients reach the proxy listening on listen: the
// public URL's host and the listener's port.
func proxyHostPort(cfg *config.Config, listen string) (string, string) {
	host, port, _ := net.SplitHostPort(listen)
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
