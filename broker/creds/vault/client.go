package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
	"github.com/custos-pam/custos/broker/metrics"
)

// Client is an authenticated Vault client. It logs in with AppRole (or uses
// a configured token), keeps its token alive with a lifetime watcher while
// Run runs, logs in again when the token expires, and bounds every call by
// the configured timeout. Build it with New.
type Client struct {
	api     *vaultapi.Client
	cfg     config.Vault
	timeout time.Duration
	log     *slog.Logger

	mu      sync.Mutex // guards auth, authErr and serializes logins
	auth    *vaultapi.SecretAuth
	authErr error
	expired chan struct{} // signalled when a call finds the token rejected
	metrics *metrics.Metrics
}

// Observe makes the client time its Vault calls and count their errors
// in m. Call it before the client is used.
func (c *Client) Observe(m *metrics.Metrics) { c.metrics = m }

// New returns a client for cfg without contacting Vault, so a broker starts
// (and requests for access work) while Vault is down. Secret references
// (role_id, secret_id, token) are resolved here.
func New(cfg config.Vault, log *slog.Logger) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("vault: no address configured")
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = config.Duration(5 * time.Second)
	}
	setDefault(&cfg.AppRoleMount, "approle")
	setDefault(&cfg.DatabaseMount, "database")
	setDefault(&cfg.SSHMount, "ssh")
	setDefault(&cfg.KVMount, "secret")
	ac := vaultapi.DefaultConfig()
	if ac.Error != nil {
		return nil, fmt.Errorf("vault: config: %w", ac.Error)
	}
	ac.Address = cfg.Address
	ac.Timeout = cfg.Timeout.D()
	ac.MaxRetries = 0
	if cfg.CACert != "" {
		if err := ac.ConfigureTLS(&vaultapi.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault: tls: %w", err)
		}
	}
	api, err := vaultapi.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault: client: %w", err)
	}
	api.ClearToken() // never pick up VAULT_TOKEN from the environment
	c := &Client{api: api, cfg: cfg, timeout: cfg.Timeout.D(), log: log.With("component", "vault"),
		expired: make(chan struct{}, 1)}
	switch {
	case cfg.RoleID.IsSet() || cfg.SecretID.IsSet():
		if !cfg.RoleID.IsSet() || !cfg.SecretID.IsSet() {
			return nil, errors.New("vault: approle needs both role_id and secret_id")
		}
		for _, s := range []config.Secret{cfg.RoleID, cfg.SecretID} {
			if _, err := s.Resolve(); err != nil {
				return nil, fmt.Errorf("vault: approle: %w", err)
			}
		}
	case cfg.Token.IsSet():
		tok, err := cfg.Token.Resolve()
		if err != nil {
			return nil, fmt.Errorf("vault: token: %w", err)
		}
		api.SetToken(tok)
		c.auth = &vaultapi.SecretAuth{ClientToken: tok}
	default:
		return nil, errors.New("vault: neither approle (role_id, secret_id) nor token configured")
	}
	return c, nil
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// API returns the underlying client, authenticated with the token this
// Client keeps alive, for other Vault users in the broker (Transit).
func (c *Client) API() *vaultapi.Client { return c.api }

// Config returns the Vault settings in effect, defaults applied.
func (c *Client) Config() config.Vault { return c.cfg }

// Timeout is the bound on each Vault call.
func (c *Client) Timeout() time.Duration { return c.timeout }

func (c *Client) approle() bool { return c.cfg.RoleID.IsSet() }

// Run keeps the client authenticated until ctx ends: it logs in (retrying
// with backoff while Vault is down), renews the token with a lifetime
// watcher, and logs in again when the token can no longer be renewed or a
// call found it rejected.
func (c *Client) Run(ctx context.Context) {
	if !c.approle() {
		c.mu.Lock()
		c.lookupSelf(ctx)
		c.mu.Unlock()
	}
	backoff := time.Second
	for ctx.Err() == nil {
		auth, err := c.ensureAuth(ctx)
		if err != nil {
			c.log.Warn("vault login failed", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		c.watch(ctx, auth)
		if !c.approle() {
			// A configured token cannot be replaced: once it is past
			// renewing there is nothing left to do.
			<-ctx.Done()
			return
		}
	}
}

// watch renews the token until it expires, is rejected, or ctx ends; then
// it forgets the token so the next ensureAuth logs in again.
func (c *Client) watch(ctx context.Context, auth *vaultapi.SecretAuth) {
	if !auth.Renewable || auth.LeaseDuration <= 0 {
		// A dev root token never expires; a non-renewable one is replaced
		// shortly before it does.
		var timer <-chan time.Time
		if auth.LeaseDuration > 0 {
			timer = time.After(time.Duration(auth.LeaseDuration) * time.Second * 4 / 5)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.expired:
		case <-timer:
		}
		c.forget(auth, "token due to expire")
		return
	}
	w, err := c.api.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{
		Secret: &vaultapi.Secret{Auth: auth},
	})
	if err != nil {
		c.forget(auth, "lifetime watcher: "+err.Error())
		return
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.expired:
			c.forget(auth, "token rejected")
			return
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				c.log.Debug("vault token renewed", "ttl_s", r.Secret.Auth.LeaseDuration)
			}
		case err := <-w.DoneCh():
			reason := "token reached its max TTL"
			if err != nil {
				reason = "renewal failed: " + err.Error()
			}
			c.forget(auth, reason)
			return
		}
	}
}

// forget drops auth so the next call logs in again. Token mode keeps its
// configured token: there is nothing else to log in with.
func (c *Client) forget(auth *vaultapi.SecretAuth, reason string) {
	if !c.approle() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auth == auth {
		c.auth = nil
		c.log.Info("vault token dropped; logging in again", "reason", reason)
	}
}

// ensureAuth returns the current auth, logging in with AppRole first when
// there is none.
func (c *Client) ensureAuth(ctx context.Context) (*vaultapi.SecretAuth, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auth != nil {
		return c.auth, nil
	}
	roleID, err := c.cfg.RoleID.Resolve()
	if err != nil {
		return nil, fmt.Errorf("vault: approle login: %w", err)
	}
	secretID, err := c.cfg.SecretID.Resolve()
	if err != nil {
		return nil, fmt.Errorf("vault: approle login: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// Log in on a clone so a stale token is not sent along.
	lc, err := c.api.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault: approle login: %w", err)
	}
	lc.ClearToken()
	began := time.Now()
	s, err := lc.Logical().WriteWithContext(cctx, "auth/"+c.cfg.AppRoleMount+"/login",
		map[string]any{"role_id": roleID, "secret_id": secretID})
	c.metrics.VaultCall("login", time.Since(began), err)
	if err != nil {
		c.authErr = classify(ctx, "approle login", err)
		return nil, c.authErr
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		c.authErr = errors.New("vault: approle login: no token in response")
		return nil, c.authErr
	}
	c.api.SetToken(s.Auth.ClientToken)
	c.auth, c.authErr = s.Auth, nil
	c.log.Info("vault approle login", "ttl_s", s.Auth.LeaseDuration, "renewable", s.Auth.Renewable,
		"policies", strings.Join(s.Auth.Policies, ","))
	return c.auth, nil
}

// lookupSelf learns a configured token's TTL so Run can renew it. Failure
// is not fatal: the token is used as given.
func (c *Client) lookupSelf(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := c.api.Auth().Token().LookupSelfWithContext(cctx)
	if err != nil || s == nil {
		return
	}
	ttl, _ := s.TokenTTL()
	renewable, _ := s.TokenIsRenewable()
	c.auth = &vaultapi.SecretAuth{ClientToken: c.auth.ClientToken, LeaseDuration: int(ttl.Seconds()), Renewable: renewable && ttl > 0}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Health reports whether Vault answers, is unsealed, and this client holds
// a token. It is what /readyz shows.
func (c *Client) Health(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	h, err := c.api.Sys().HealthWithContext(cctx)
	if err != nil {
		return classify(ctx, "health", err)
	}
	if !h.Initialized || h.Sealed {
		return fmt.Errorf("vault: health: sealed or uninitialized: %w", creds.ErrVaultUnreachable)
	}
	if _, err := c.ensureAuth(ctx); err != nil {
		return err
	}
	return nil
}

// call runs fn with the client's token and a context bounded by the
// timeout. A rejected token (403) with AppRole triggers one fresh login and
// one retry.
func (c *Client) call(ctx context.Context, op string, fn func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error)) (*vaultapi.Secret, error) {
	if _, err := c.ensureAuth(ctx); err != nil {
		return nil, fmt.Errorf("vault: %s: %w", op, err)
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		began := time.Now()
		s, err := fn(cctx, c.api)
		c.metrics.VaultCall(op, time.Since(began), err)
		cancel()
		if err == nil {
			return s, nil
		}
		var re *vaultapi.ResponseError
		if attempt == 0 && c.approle() && errors.As(err, &re) && re.StatusCode == http.StatusForbidden && !c.tokenValid(ctx) {
			c.mu.Lock()
			c.auth = nil
			c.mu.Unlock()
			select {
			case c.expired <- struct{}{}:
			default:
			}
			if _, lerr := c.ensureAuth(ctx); lerr == nil {
				continue
			}
		}
		return nil, classify(ctx, op, err)
	}
}

// tokenValid tells a dead token from a policy denial: both are 403.
func (c *Client) tokenValid(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.api.Auth().Token().LookupSelfWithContext(cctx)
	return err == nil
}

func (c *Client) read(ctx context.Context, path string) (*vaultapi.Secret, error) {
	return c.call(ctx, "read "+path, func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error) {
		return api.Logical().ReadWithContext(ctx, path)
	})
}

func (c *Client) write(ctx context.Context, path string, data map[string]any) (*vaultapi.Secret, error) {
	return c.call(ctx, "write "+path, func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error) {
		return api.Logical().WriteWithContext(ctx, path, data)
	})
}

// ErrStatus is a Vault error response; errors.As it to see the status.
type ErrStatus struct {
	Op     string
	Status int
	Errors []string
}

func (e *ErrStatus) Error() string {
	msg := strings.Join(e.Errors, "; ")
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("vault: %s: %s (status %d)", e.Op, msg, e.Status)
}

// classify turns a Vault API error into a Custos error: transport
// failures, timeouts and an unavailable (sealed, standby) Vault wrap
// creds.ErrVaultUnreachable; an error response becomes *ErrStatus. The
// error text carries Vault's messages and the path, never a secret.
func classify(ctx context.Context, op string, err error) error {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return fmt.Errorf("vault: %s: status %d: %w", op, re.StatusCode, creds.ErrVaultUnreachable)
		}
		return &ErrStatus{Op: op, Status: re.StatusCode, Errors: re.Errors}
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The caller gave up; that is not Vault's fault.
		return fmt.Errorf("vault: %s: %w", op, ctx.Err())
	}
	return fmt.Errorf("vault: %s: %w (%s)", op, creds.ErrVaultUnreachable, transportCause(err))
}

// transportCause names what failed without repeating request details.
func transportCause(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	}
	var s string
	if u := errors.Unwrap(err); u != nil {
		s = u.Error()
	} else {
		s = err.Error()
	}
	return s
}

// callAs runs fn as another token (a per-grant token), bounded by the
// timeout, on a clone of the client so the broker's own token is untouched.
func (c *Client) callAs(ctx context.Context, token, op string, fn func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error)) (*vaultapi.Secret, error) {
	api, err := c.api.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault: %s: %w", op, err)
	}
	api.SetToken(token)
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	began := time.Now()
	s, err := fn(cctx, api)
	c.metrics.VaultCall(op, time.Since(began), err)
	if err != nil {
		return nil, classify(ctx, op, err)
	}
	return s, nil
}

// revokeSelf revokes a per-grant token, best effort: it expires at the
// grant's end anyway and holds no lease by the time this is called.
func (c *Client) revokeSelf(ctx context.Context, token string) {
	_, err := c.callAs(context.WithoutCancel(ctx), token, "revoke token", func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error) {
		return nil, api.Auth().Token().RevokeSelfWithContext(ctx, "")
	})
	if err != nil {
		c.log.Debug("per-grant token not revoked; it expires with the grant", "err", err)
	}
}
