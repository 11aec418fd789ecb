package breakglass

import (
	"context"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/policy"
)

// passkeyVerifier checks a passkey assertion with user verification whose
// challenge was begun for exactly (user, action, objectID), consumed on
// first use; *identity.StepUp implements it.
type passkeyVerifier interface {
	VerifyPasskey(ctx context.Context, user, action, objectID string, assertion []byte) error
}

// SetStepUp makes passkey step-ups of asks and confirmations possible
// (identity.step_up.breakglass_confirm); call before serving. Without
// one a passkey is refused with passkeys_disabled.
func (s *Service) SetStepUp(v passkeyVerifier) { s.passkeys = v }

// stepUpBinding is what a custodian's passkey step-up is bound to: an
// ask to the account (the unseal has no ID yet), a confirmation to the
// unseal's ID.
func stepUpBinding(a *config.BreakGlassAccount, u *Unseal, ask bool) (action, object, what string) {
	if ask {
		return identity.ActionBreakGlassUnseal, a.Name, "asking to unseal " + a.Name
	}
	return identity.ActionBreakGlassConfirm, u.ID, "confirming unseal " + u.ID
}

// authenticate checks a custodian's confirmation of u (asking is the
// asker's confirmation): the signature when signatures.unseal is
// required, the second factor otherwise, and the step-up that
// identity.step_up.breakglass_confirm asks for. It returns the signature
// (nil when none) and the method recorded as the confirmation's second
// factor. The unseal of a drill the broker starts is neither signed nor
// stepped up at the ask (drill); its confirmations are.
func (s *Service) authenticate(ctx context.Context, a *config.BreakGlassAccount, u *Unseal, actor string, f Factor, ask, drill bool) (*broker.Signature, string, error) {
	required := s.cfg.Identity.StepUp.BreakGlassConfirm
	if drill {
		required = ""
	}
	action, object, what := stepUpBinding(a, u, ask)
	// A confirmation that cannot meet the step-up is refused before a
	// single-use code is spent on it.
	if required == config.StepUpPasskey && len(f.Passkey) == 0 {
		return nil, "", stepUpRefusal(required, "", what)
	}
	if s.cfg.Signatures.UnsealRequired() && !drill {
		sig, err := s.signConfirm(ctx, a, u, actor, f, ask)
		if err != nil {
			return nil, "", err
		}
		method := policy.StepUpMethodTOTP // password and TOTP
		if sig.Method == esign.MethodPasskey {
			method = policy.StepUpMethodPasskey
		}
		if !policy.StepUpSatisfied(required, method) {
			return nil, "", stepUpRefusal(required, method, what)
		}
		return sig, sig.Method, nil
	}
	method := ""
	if len(f.Passkey) > 0 {
		if s.passkeys == nil {
			return nil, "", refuse(broker.KindUnavailable, "passkeys_disabled", "this broker has no passkey support")
		}
		if err := s.passkeys.VerifyPasskey(ctx, actor, action, object, f.Passkey); err != nil {
			return nil, "", err
		}
		method = policy.StepUpMethodPasskey
	}
	factor, err := s.checkFactor(ctx, a, actor, f)
	if err != nil {
		return nil, "", err
	}
	if method == "" && f.TOTP != "" {
		method = policy.StepUpMethodTOTP // checkFactor checked the code
	}
	if !policy.StepUpSatisfied(required, method) {
		return nil, "", stepUpRefusal(required, method, what)
	}
	if method == policy.StepUpMethodPasskey {
		factor += "+passkey"
	}
	return nil, factor, nil
}

func stepUpRefusal(required, method, what string) *Error {
	err := policy.CheckStepUp(required, method, what)
	msg := "a fresh confirmation is required"
	if err != nil {
		msg = err.Error()
	}
	return forbidden(policy.CodeStepUpRequired, "%s", msg)
}
