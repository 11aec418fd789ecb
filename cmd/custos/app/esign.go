package app

import (
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
)

// newSigner builds the electronic-signature ceremony over the sign-in
// service (password and TOTP) and gives it to the access service. Passkey
// signing is off until a passkey verifier is set (esign.Signer.SetPasskeys).
func newSigner(live *config.Live, ids *identity.Service, acc *access.Service) *esign.Signer {
	sg := esign.New(esign.Options{Config: live, Reauth: ids, Names: ids.Directory()})
	acc.SetSigner(sg)
	return sg
}
