package app

import (
	"fmt"
	"log/slog"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
)

// newStepUp returns the step-up verifier with the passkey registry for
// the relying party identity.webauthn names (defaults from public_url).
// A public_url whose host is an IP address cannot be a relying party:
// without an explicit rp_id passkeys are then off (TOTP step-ups still
// work), with a warning; an explicit rp_id that is invalid fails.
func newStepUp(cfg *config.Config, st broker.Store, log *audit.Log, dir *identity.Directory, slog *slog.Logger) (*identity.StepUp, error) {
	keys, err := identity.NewPasskeys(cfg.Identity.WebAuthn, cfg.PublicURL, st, log, nil)
	if err != nil {
		if cfg.Identity.WebAuthn.RPID != "" {
			return nil, fmt.Errorf("identity.webauthn: %w", err)
		}
		slog.Warn("passkeys are off: public_url's host cannot be a WebAuthn relying party; set identity.webauthn.rp_id", "err", err)
		keys = nil
	}
	return identity.NewStepUp(keys, dir, st, log, nil, nil), nil
}
