package app

import (
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
func enablePasskeySigning(sg *esign.Signer, su *identity.StepUp, bg *breakglass.Service) {
	if su == nil || su.Passkeys() == nil {
		return
	}
	sg.SetPasskeys(su)
	if bg != nil {
		bg.SetStepUp(su)
	}
}
