package app

import (
	"fmt"
	"strings"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
)

// newSSO returns the single sign-on client, or nil when
// identity.oidc is not configured.
func newSSO(cfg *config.Config) (*identity.OIDC, error) {
	if cfg.Identity.OIDC == nil {
		return nil, nil
	}
	o, err := identity.NewOIDC(*cfg.Identity.OIDC, strings.TrimRight(cfg.PublicURL, "/")+"/auth/oidc/callback", nil)
	if err != nil {
		return nil, fmt.Errorf("identity.oidc: %w", err)
	}
	return o, nil
}

// tokenAudience is the audience the broker binds its tokens to: its
// public URL, so a token issued by another broker sharing the store is
// refused. Empty without a public URL.
func tokenAudience(cfg *config.Config) string {
	return strings.TrimRight(cfg.PublicURL, "/")
}
