package vault

import (
	"context"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
)

// checkBreakGlass refuses a grant for a break-glass account's role that no
// unseal of that account opened, and a grant naming an account that does
// not use its role: a sealed account's credential goes only to its unseal.
func (i *Issuer) checkBreakGlass(g broker.Grant) error {
	a, sealed := i.cfg.Load().BreakGlassFor(g.Target, g.Role)
	switch {
	case sealed && g.BreakGlass != a.Name:
		return fmt.Errorf("role %s of %s is the sealed break-glass account %s: only an unseal opens it", g.Role, g.Target, a.Name)
	case !sealed && g.BreakGlass != "":
		return fmt.Errorf("grant names break-glass account %q, which does not use role %s of %s", g.BreakGlass, g.Role, g.Target)
	}
	return nil
}

// breakGlassStatic reports whether g's role is a break-glass account whose
// PostgreSQL login is a database static role.
func (i *Issuer) breakGlassStatic(g broker.Grant) (*config.BreakGlassAccount, bool) {
	a, ok := i.cfg.Load().BreakGlassFor(g.Target, g.Role)
	return a, ok && a.Credential.Type == config.BreakGlassDatabaseStatic
}

// breakGlassLogin returns the static role's current login for a session of
// an unsealed account. There is no lease: the account is rotated when it
// closes, and the grant's end closes the session.
func (i *Issuer) breakGlassLogin(ctx context.Context, g broker.Grant, sessionID string, a *config.BreakGlassAccount) (creds.Lease, error) {
	err := i.checkBreakGlass(g)
	if err == nil {
		_, err = i.checkActive(g)
	}
	var sc StaticCreds
	if err == nil {
		sc, err = i.StaticCreds(ctx, g.User, a.Credential.VaultRole)
	}
	if err != nil {
		i.auditIssueFailure(ctx, g, g.Target, sessionID, err)
		return creds.Lease{}, fmt.Errorf("creds: grant %s: %w", g.ID, err)
	}
	if _, err := i.audit.Append(ctx, audit.Entry{Actor: g.User, Action: "creds.issue", Target: g.Target,
		Outcome: broker.OutcomeSuccess, Details: map[string]any{
			"kind": "postgres_static", "grant_id": g.ID, "session_id": sessionID, "break_glass": a.Name,
			"vault_role": a.Credential.VaultRole, "username": sc.Username, "expires_at": g.EffectiveEnd().UTC()},
	}); err != nil {
		return creds.Lease{}, fmt.Errorf("creds: grant %s: audit: %w", g.ID, err)
	}
	i.log.Info("break-glass login issued", "grant_id", g.ID, "session_id", sessionID, "account", a.Name, "username", sc.Username)
	return creds.Lease{Username: sc.Username, Password: sc.Password, ExpiresAt: g.EffectiveEnd(),
		GrantID: g.ID, SessionID: sessionID}, nil
}
