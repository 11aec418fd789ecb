package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/web"
	"github.com/custos-pam/custos/web/scim"
)

// startSCIM loads the SCIM users into the directory (before the start-up
// sweep, which would otherwise end their access), makes a SCIM change
// that takes access away end it at once through deprovisionUser, and
// serves /scim/v2. Without identity.scim it does nothing, so SCIM users
// are unknown and the sweep ends their access.
func startSCIM(ctx context.Context, cfg *config.Config, srv *web.Server, ids *identity.Service, acc *access.Service,
	rejections *audit.Throttle, log *slog.Logger) error {
	c := cfg.Identity.SCIM
	if c == nil {
		return nil
	}
	tok, err := c.Token.Resolve()
	if err != nil {
		return fmt.Errorf("identity.scim.token: %w", err)
	}
	ids.Directory().SetSCIMAdminGroups(c.SecurityAdminGroups)
	ids.SetAccessLoss(func(ctx context.Context, user, reason string) error {
		return deprovisionUser(ctx, ids, acc, user, reason, log)
	})
	if err := ids.LoadSCIM(ctx); err != nil {
		return err
	}
	h, err := scim.New(scim.Options{Token: tok, Store: ids, Rejections: rejections, BaseURL: cfg.PublicURL, Log: log})
	if err != nil {
		return err
	}
	h.Register(srv)
	return nil
}
