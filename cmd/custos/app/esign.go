package app

import (
	"context"

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
	sg.SetPasskeys(SigningPasskeys{StepUp: su})
	if bg != nil {
		bg.SetStepUp(su)
	}
}

// SigningPasskeys is the passkey verifier of electronic signatures
// (esign.Signer.SetPasskeys): a signature's passkey answers a step-up
// begun for the action "signature" and the object "<action>:<objectID>".
type SigningPasskeys struct{ StepUp *identity.StepUp }

// Verify checks assertion for user signing action on objectID.
func (p SigningPasskeys) Verify(ctx context.Context, user, action, objectID string, assertion []byte) error {
	_, err := p.StepUp.Verify(ctx, user, identity.ActionSign, action+":"+objectID, assertion)
	return err
}
