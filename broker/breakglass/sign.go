package breakglass

import (
	"context"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
)

// signer runs the electronic-signature ceremony; *esign.Signer
// implements it.
type signer interface {
	Sign(ctx context.Context, user string, rec esign.Record, in *esign.Input) (broker.Signature, error)
}

// SetSigner makes unseal confirmations electronic signatures when
// signatures.unseal is "required"; call before serving. Without one such
// confirmations are refused.
func (s *Service) SetSigner(sg signer) { s.signer = sg }

// unsealRecord is what a custodian's signed confirmation of u signs.
func unsealRecord(a *config.BreakGlassAccount, u *Unseal) esign.Record {
	return esign.Record{Action: config.SignUnseal, ObjectID: u.ID, Fields: []esign.Field{
		{Name: "account", Value: a.Name}, {Name: "target", Value: a.Target}, {Name: "role", Value: a.Role}, {Name: "requested_by", Value: u.RequestedBy},
		{Name: "reason", Value: u.Reason}, {Name: "incident", Value: u.Incident}, {Name: "drill", Value: u.Drill},
	}}
}

// signConfirm runs the signing ceremony for a confirmation of u: the
// custodian's password and TOTP code (through the sign-in limiter) or a
// passkey, and a meaning from signatures.meanings.unseal. It replaces the
// second-factor check. The asker cannot know the unseal's ID before
// asking: their passkey is bound to "account/NAME" instead (ask).
func (s *Service) signConfirm(ctx context.Context, a *config.BreakGlassAccount, u *Unseal, actor string, f Factor, ask bool) (*broker.Signature, error) {
	if s.signer == nil {
		return nil, forbidden(esign.CodeSignatureRequired, "unseal confirmations are electronic signatures and signing is not available on this broker")
	}
	rec := unsealRecord(a, u)
	if ask {
		rec.Challenge = "account/" + a.Name
	}
	sig, err := s.signer.Sign(ctx, actor, rec, &esign.Input{Meaning: f.Meaning, Password: f.Password, TOTP: f.TOTP, Passkey: f.Passkey, Source: f.Source})
	if err != nil {
		return nil, err
	}
	return &sig, nil
}
