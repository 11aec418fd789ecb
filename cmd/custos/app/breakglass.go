package app

import (
	"context"
	"fmt"
	"log/slog"

	slackapprovals "github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/web"
	webui "github.com/custos-pam/custos/web/ui"
)

// securityNotifier posts to the security channel; the Slack integration
// implements it. A nil interface means no Slack.
type securityNotifier interface {
	SecurityNotice(ctx context.Context, text string) error
	SecurityNoticeWithLink(ctx context.Context, text string, l slackapprovals.Link) error
}

// unsealLinkText labels the button under an unseal request's notice.
const unsealLinkText = "Review and confirm in Custos"

// breakGlassNotices adapts the security channel to the break-glass
// service: a pending unseal's notice carries a button to its page in the
// web UI, since a confirmation needs a fresh second factor that Slack
// cannot take.
type breakGlassNotices struct{ securityNotifier }

// UnsealRequested implements the break-glass service's hand-off.
func (n breakGlassNotices) UnsealRequested(ctx context.Context, text string, u breakglass.Unseal) error {
	return n.SecurityNoticeWithLink(ctx, text, slackapprovals.Link{Text: unsealLinkText, Path: webui.UnsealPath(u.ID)})
}

// noVault stands in for the issuer when Vault is not configured: every
// break-glass step that needs a credential fails with errNoVault.
type noVault struct{}

func (noVault) StaticCreds(context.Context, string, string) (vaultcreds.StaticCreds, error) {
	return vaultcreds.StaticCreds{}, errNoVault
}
func (noVault) RotateStatic(context.Context, string, string) error { return errNoVault }
func (noVault) SSHForSession(context.Context, broker.Grant, string) (creds.SSHCert, error) {
	return creds.SSHCert{}, errNoVault
}

// startBreakGlass builds the break-glass service, registers its metrics on
// srv (the API serves it) and starts its scheduler with serve (it stops with ctx).
// Confirmations re-check the custodian's password and TOTP code with the
// same replay guard as sign-in, so a code used to log in cannot confirm.
// issuer, rec and notify may be nil.
func startBreakGlass(ctx context.Context, cfg *config.Config, st broker.Store, auditLog *audit.Log, dir *identity.Directory,
	acc *access.Service, issuer *vaultcreds.Issuer, rec *recorder.Recorder, notify securityNotifier,
	srv *web.Server, log *slog.Logger, serve func(func())) (*breakglass.Service, error) {
	if len(cfg.BreakGlass) > 0 && issuer == nil {
		return nil, fmt.Errorf("break-glass accounts are configured but Vault is not (vault.address)")
	}
	o := breakglass.Options{Config: cfg, Store: st, Audit: auditLog, Directory: dir,
		Authenticator: identity.NewPasswordAuthenticator(dir, identity.StoreStepGuard{Store: st}, nil),
		Access:        acc, Vault: noVault{}, Registry: srv.Registry(), Log: log}
	if issuer != nil {
		o.Vault = issuer
	}
	if notify != nil {
		o.Notifier = breakGlassNotices{notify}
	}
	if rec != nil {
		o.Record = DrillRecording(rec)
	}
	svc, err := breakglass.New(o)
	if err != nil {
		return nil, err
	}
	serve(func() { _ = svc.Run(ctx) })
	if len(cfg.BreakGlass) > 0 {
		log.Info("break-glass accounts loaded", "accounts", len(cfg.BreakGlass))
	}
	return svc, nil
}
