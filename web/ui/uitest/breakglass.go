package uitest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/creds"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/identity"
)

// totpKeys are the custodians' second factors.
var totpKeys = map[string][]byte{
	"erin":  []byte("custos-uitest-erin-key!!"),
	"frank": []byte("custos-uitest-frank-key!"),
}

// Code returns user's TOTP code at t, or "" for a user without one.
func Code(user string, t time.Time) string {
	if user == "sam" {
		return identity.TOTP(TOTPKey, t)
	}
	if k, ok := totpKeys[user]; ok {
		return identity.TOTP(k, t)
	}
	return ""
}

// FreshCode returns user's code for the next time step. A code is
// accepted once per user (the code used to sign in cannot confirm an
// unseal), and a step either side of now is accepted, so the next step's
// code is a fresh second factor right after signing in with the current
// one.
func FreshCode(user string) string { return Code(user, time.Now().Add(30*time.Second)) }

// errNoVault is what the UI env's break-glass service gets from Vault:
// nothing the UI tests do needs a credential (ssh-root has no standing
// secret; closing pg-admin fails its rotation and flags it compromised).
var errNoVault = errors.New("uitest: no vault in the web UI test env")

type noVault struct{}

func (noVault) StaticCreds(context.Context, string, string) (vaultcreds.StaticCreds, error) {
	return vaultcreds.StaticCreds{}, errNoVault
}
func (noVault) RotateStatic(context.Context, string, string) error { return errNoVault }
func (noVault) SSHForSession(context.Context, broker.Grant, string) (creds.SSHCert, error) {
	return creds.SSHCert{}, errNoVault
}

// Notices records what the break-glass service posts to the security
// channel, as the Slack integration would receive it.
type Notices struct {
	mu      sync.Mutex
	texts   []string
	unseals []string
}

// SecurityNotice implements the service's notifier.
func (n *Notices) SecurityNotice(_ context.Context, text string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.texts = append(n.texts, text)
	return nil
}

// UnsealRequested implements the service's hand-off of a pending unseal
// (the broker's wiring turns it into a Slack button to the web UI).
func (n *Notices) UnsealRequested(ctx context.Context, text string, u breakglass.Unseal) error {
	n.mu.Lock()
	n.unseals = append(n.unseals, u.ID)
	n.mu.Unlock()
	return n.SecurityNotice(ctx, text)
}

// Texts returns the notices so far.
func (n *Notices) Texts() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.texts...)
}

// Unseals returns the ids of the unseals handed off for confirmation.
func (n *Notices) Unseals() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.unseals...)
}

// clock is the break-glass service's time: real time plus an offset.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) set(d time.Duration) {
	c.mu.Lock()
	c.offset = d
	c.mu.Unlock()
}

// startBreakGlass runs the real break-glass service over the env's store.
// Its first start is dated two hours back, so the accounts were first seen
// then and ssh-root's hourly drill is overdue; the clock is real after
// that. Re-authentication shares the sign-in's TOTP replay guard, as in
// the broker.
func (e *Env) startBreakGlass(tb testing.TB, dir *identity.Directory, log *slog.Logger) {
	tb.Helper()
	clk := &clock{offset: -2 * time.Hour}
	e.Notices = &Notices{}
	svc, err := breakglass.New(breakglass.Options{Config: e.Config, Store: e.State, Audit: e.Audit, Directory: dir,
		Authenticator: identity.NewPasswordAuthenticator(dir, identity.StoreStepGuard{Store: e.State}, nil),
		Access:        e.Access, Vault: noVault{}, Notifier: e.Notices, Log: log, Now: clk.now})
	if err != nil {
		tb.Fatalf("uitest: break-glass: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = svc.Run(ctx)
	}()
	tb.Cleanup(func() { cancel(); <-done })
	select {
	case <-svc.Started():
	case <-time.After(time.Minute):
		tb.Fatal("uitest: break-glass service did not start")
	}
	clk.set(0)
	e.BreakGlass = svc
}
