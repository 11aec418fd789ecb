package app

import (
	"errors"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
)

// newSigner builds the electronic-signature ceremony over the sign-in
// service (password and TOTP) and gives it to the access service. Passkey
// signing is off until enablePasskeySigning.
func newSigner(live *config.Live, ids *identity.Service, acc *access.Service) *esign.Signer {
	sg := esign.New(esign.Options{Config: live, Reauth: ids, Names: ids.Directory()})
	acc.SetSigner(sg)
	return sg
}

// enablePasskeySigning makes a passkey a signature's re-authentication
// when the broker is a WebAuthn relying party: the assertion answers a
// step-up challenge begun for action "signature" and object
// "<signature action>:<object>" (approve:req_…, deny:req_…, unseal:bgu_…,
// unseal:account/NAME for an ask, review:rev_…), with user verification,
// consumed on first use. It also makes a passkey the break-glass step-up.
// Without a relying party, identity.step_up.breakglass_confirm: passkey
// would make every unseal impossible: the start fails instead.
func enablePasskeySigning(cfg *config.Config, sg *esign.Signer, su *identity.StepUp, bg *breakglass.Service) error {
	if su == nil || su.Passkeys() == nil {
		if cfg.Identity.StepUp.BreakGlassConfirm == config.StepUpPasskey && len(cfg.BreakGlass) > 0 {
			return errors.New("identity.step_up.breakglass_confirm is passkey but passkeys are off (public_url's host is not a WebAuthn relying party): set identity.webauthn.rp_id")
		}
		return nil
	}
	sg.SetPasskeys(su)
	if bg != nil {
		bg.SetStepUp(su)
	}
	return nil
}
