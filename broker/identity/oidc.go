package identity

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// Sign-in flow purposes: where the authorization code comes back.
const (
	PurposeWeb = "web" // the broker's /auth/oidc/callback, browser session
	PurposeCLI = "cli" // the CLI's loopback listener, API token
)

// flowTTL bounds how long a started sign-in may take at the provider.
const flowTTL = 10 * time.Minute

// maxFlows bounds pending sign-ins, so unauthenticated callers cannot
// grow the table without limit; maxFlowsPerSource keeps one address from
// taking all of them.
const (
	maxFlows          = 2000
	maxFlowsPerSource = 20
)

// ErrDevicePending is DevicePoll's answer while the user has not yet
// approved the device at the provider.
// Its Code is CodeAuthorizationPending.
var ErrDevicePending error = &Error{Kind: broker.KindConflict, Code: CodeAuthorizationPending,
	Message: "sso: waiting for the user to approve the device at the identity provider"}

// CodeAuthorizationPending: a device sign-in the user has not approved yet.
const CodeAuthorizationPending = "authorization_pending"

// OIDC signs users in with an OpenID Provider: authorization code with
// PKCE (S256), state and nonce, for the web UI and the CLI's loopback
// redirect, and the device authorization grant for headless CLIs. The
// broker is the confidential client: the client secret and the code
// exchange never leave it. Every ID token is checked for signature,
// issuer, audience (client_id), expiry and, for code flows, the nonce of
// the flow its state names; a state works once.
type OIDC struct {
	cfg    config.OIDC
	secret string
	// redirect is the web callback URL registered at the provider.
	redirect string
	client   *http.Client
	now      func() time.Time

	mu       sync.Mutex
	provider *oidc.Provider // nil until discovery succeeded
	// flows holds the sign-ins in progress; NewService points it at the
	// state store.
	flows *flowTable
}

// useStore keeps the sign-ins in progress in st.
func (o *OIDC) useStore(st broker.Store) { o.flows = &flowTable{store: st, now: o.now} }

// NewOIDC returns the single sign-on client for cfg. webRedirect is the
// web callback URL (cfg.RedirectURL wins). Discovery happens on first
// use, so a provider that is down at start delays only sign-ins.
func NewOIDC(cfg config.OIDC, webRedirect string, now func() time.Time) (*OIDC, error) {
	cfg = cfg.WithDefaults()
	secret, err := cfg.ClientSecret.Resolve()
	if err != nil {
		return nil, fmt.Errorf("sso: client_secret: %w", err)
	}
	if cfg.RedirectURL != "" {
		webRedirect = cfg.RedirectURL
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("sso: ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sso: ca_cert %s: no certificate", cfg.CACert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if now == nil {
		now = time.Now
	}
	return &OIDC{cfg: cfg, secret: secret, redirect: webRedirect, now: now,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// Name is the provider's display name.
func (o *OIDC) Name() string { return o.cfg.Name }

// Config returns the SSO configuration with defaults.
func (o *OIDC) Config() config.OIDC { return o.cfg }

// discover returns the provider, reading its discovery document on first
// success.
func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	p := o.provider
	o.mu.Unlock()
	if p != nil {
		return p, nil
	}
	// The key set fetches keys later with the context given here.
	p, err := oidc.NewProvider(oidc.ClientContext(context.WithoutCancel(ctx), o.client), o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("sso: discover %s: %w", o.cfg.Issuer, err)
	}
	o.mu.Lock()
	o.provider = p
	o.mu.Unlock()
	return p, nil
}

func (o *OIDC) oauth(p *oidc.Provider, redirect string) *oauth2.Config {
	ep := p.Endpoint()
	// Authenticate the way the provider says it takes: guessing (trying
	// one style, then the other on any error) would turn a device poll's
	// authorization_pending into invalid_client.
	var meta struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := p.Claims(&meta); err == nil {
		switch {
		case len(meta.Methods) == 0 || slices.Contains(meta.Methods, "client_secret_basic"):
			ep.AuthStyle = oauth2.AuthStyleInHeader
		case slices.Contains(meta.Methods, "client_secret_post"):
			ep.AuthStyle = oauth2.AuthStyleInParams
		}
	}
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.secret, Endpoint: ep,
		RedirectURL: redirect, Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Begin starts a sign-in for purpose and returns the provider URL to send
// the browser to and the flow's state. A web flow comes back to the
// broker's callback; a CLI flow to redirect, which must be a loopback
// http URL with a port (RFC 8252).
func (o *OIDC) Begin(ctx context.Context, purpose, redirect string) (authURL, state string, err error) {
	switch purpose {
	case PurposeWeb:
		redirect = o.redirect
	case PurposeCLI:
		if err := checkLoopback(redirect); err != nil {
			return "", "", &Error{Kind: broker.KindInvalid, Code: CodeBadRequest, Message: "sso: redirect_uri: " + err.Error()}
		}
	default:
		return "", "", fmt.Errorf("sso: begin: unknown purpose %q", purpose)
	}
	p, err := o.discover(ctx)
	if err != nil {
		return "", "", err
	}
	f := flow{Purpose: purpose, Nonce: randomString(), Verifier: oauth2.GenerateVerifier(), Redirect: redirect,
		Source: audit.Source(ctx), Expires: o.now().Add(flowTTL)}
	state = randomString()
	if err := o.flows.add(ctx, state, f); err != nil {
		return "", "", flowsErr(err)
	}
	authURL = o.oauth(p, redirect).AuthCodeURL(state, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	return authURL, state, nil
}

// flowsErr turns errFlowsFull into its refusal.
func flowsErr(err error) error {
	if errors.Is(err, errFlowsFull) {
		return &Error{Kind: broker.KindRateLimited, Code: CodeTooManyAttempts, Message: "sso: too many sign-ins in progress: try again later"}
	}
	return fmt.Errorf("sso: %w", err)
}

// Finish completes the sign-in that state names: the state is consumed
// (a second Finish with it fails), the code is exchanged with the flow's
// PKCE verifier at the redirect URI the flow began with, and the ID
// token is verified (signature, issuer, audience, expiry, nonce) and
// mapped. purpose must be the one the flow began with.
func (o *OIDC) Finish(ctx context.Context, purpose, state, code string) (SSOUser, error) {
	if state == "" {
		return SSOUser{}, loginFailed("sso: unknown, used or expired state")
	}
	f, ok, err := o.flows.take(ctx, state)
	if err != nil {
		return SSOUser{}, fmt.Errorf("sso: %w", err)
	}
	if !ok || f.Purpose != purpose || o.now().After(f.Expires) {
		return SSOUser{}, loginFailed("sso: unknown, used or expired state")
	}
	if code == "" {
		return SSOUser{}, loginFailed("sso: no authorization code")
	}
	p, err := o.discover(ctx)
	if err != nil {
		return SSOUser{}, err
	}
	tok, err := o.oauth(p, f.Redirect).Exchange(oidc.ClientContext(ctx, o.client), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return SSOUser{}, exchangeFailed(err)
	}
	return o.verify(ctx, p, tok, f.Nonce)
}

// exchangeFailed tells a refused code (reused, expired, wrong verifier:
// the provider's OAuth error) from an unreachable provider.
func exchangeFailed(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return loginFailed("sso: code exchange refused by the provider: " + re.ErrorCode)
	}
	return fmt.Errorf("sso: code exchange: %w", err)
}

// verify checks the ID token in tok and maps its claims. nonce is the
// flow's; empty (device grant) accepts a token without one.
func (o *OIDC) verify(ctx context.Context, p *oidc.Provider, tok *oauth2.Token, nonce string) (SSOUser, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return SSOUser{}, loginFailed("sso: the provider sent no id_token")
	}
	v := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.now})
	idt, err := v.Verify(oidc.ClientContext(ctx, o.client), raw)
	if err != nil {
		return SSOUser{}, loginFailed("sso: id token: " + err.Error())
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return SSOUser{}, loginFailed("sso: id token nonce does not match the sign-in's")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return SSOUser{}, loginFailed("sso: id token claims: " + err.Error())
	}
	return MapClaims(claims, o.cfg)
}

// DeviceStart asks the provider for a device code (RFC 8628) and returns
// what the user must see (verification URI and user code) and a handle
// that DevicePoll takes. The device code itself stays on the broker.
func (o *OIDC) DeviceStart(ctx context.Context) (*oauth2.DeviceAuthResponse, string, error) {
	if err := o.flows.checkRoom(ctx, audit.Source(ctx)); err != nil {
		return nil, "", flowsErr(err)
	}
	p, err := o.discover(ctx)
	if err != nil {
		return nil, "", err
	}
	cfg := o.oauth(p, "")
	if cfg.Endpoint.DeviceAuthURL == "" {
		return nil, "", &Error{Kind: broker.KindUnavailable, Code: "sso_no_device_grant",
			Message: "sso: the provider offers no device authorization grant: use custos login --sso on a host with a browser"}
	}
	resp, err := cfg.DeviceAuth(oidc.ClientContext(ctx, o.client))
	if err != nil {
		return nil, "", fmt.Errorf("sso: device authorization: %w", err)
	}
	handle := randomString()
	exp := resp.Expiry
	if exp.IsZero() {
		exp = o.now().Add(flowTTL)
	}
	if err := o.flows.addDevice(ctx, handle, deviceFlow{DeviceCode: resp.DeviceCode, Interval: resp.Interval,
		Source: audit.Source(ctx), Expires: exp}); err != nil {
		return nil, "", flowsErr(err)
	}
	return resp, handle, nil
}

// DevicePoll waits up to wait for the user to approve the device flow
// handle names, and returns the signed-in user then; ErrDevicePending
// when wait ran out first. A completed handle is consumed.
func (o *OIDC) DevicePoll(ctx context.Context, handle string, wait time.Duration) (SSOUser, error) {
	if handle == "" {
		return SSOUser{}, loginFailed("sso: unknown, used or expired device sign-in")
	}
	d, ok, err := o.flows.device(ctx, handle)
	if err != nil {
		return SSOUser{}, fmt.Errorf("sso: %w", err)
	}
	if !ok {
		return SSOUser{}, loginFailed("sso: unknown, used or expired device sign-in")
	}
	p, err := o.discover(ctx)
	if err != nil {
		return SSOUser{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	resp := &oauth2.DeviceAuthResponse{DeviceCode: d.DeviceCode, Interval: d.Interval, Expiry: d.Expires}
	tok, err := o.oauth(p, "").DeviceAccessToken(oidc.ClientContext(wctx, o.client), resp)
	if err != nil {
		if wctx.Err() != nil && ctx.Err() == nil {
			return SSOUser{}, ErrDevicePending
		}
		if _, terr := o.flows.takeDevice(ctx, handle); terr != nil {
			return SSOUser{}, fmt.Errorf("sso: %w", terr)
		}
		return SSOUser{}, exchangeFailed(err)
	}
	still, err := o.flows.takeDevice(ctx, handle)
	if err != nil {
		return SSOUser{}, fmt.Errorf("sso: %w", err)
	}
	if !still {
		return SSOUser{}, loginFailed("sso: device sign-in already used")
	}
	return o.verify(ctx, p, tok, "")
}

// checkLoopback accepts http://127.0.0.1:PORT/…, http://[::1]:PORT/… and
// http://localhost:PORT/…: a redirect only a process on the signing-in
// user's own machine receives.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be a plain http loopback URL")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		return errors.New("must name a port")
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return errors.New("must be on a loopback address")
		}
	}
	return nil
}
