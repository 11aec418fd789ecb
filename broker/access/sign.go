package access

import (
	"context"
	"slices"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/policy"
)

// signer runs the electronic-signature ceremony; *esign.Signer
// implements it.
type signer interface {
	Sign(ctx context.Context, user string, rec esign.Record, in *esign.Input) (broker.Signature, error)
}

// SetSigner makes decisions on roles with policy.signature: required
// possible; without one they are refused. Call before serving.
func (s *Service) SetSigner(sg signer) { s.signer = sg }

func decideAction(d Decision) string {
	if d.Approve {
		return config.SignApprove
	}
	return config.SignDeny
}

// sign runs the signature ceremony for a decision on a role that requires
// one, or when the decider offers a signature. The vote is checked first,
// so a refused vote (own request, not an approver, decided already) uses
// up no TOTP code.
func (s *Service) sign(ctx context.Context, actor, requestID string, d Decision) (*broker.Signature, error) {
	req, err := s.GetRequest(ctx, requestID)
	if err != nil {
		return nil, err
	}
	pol, err := s.policyFor(req.Target, req.Role)
	if err != nil {
		return nil, err
	}
	if !pol.SignatureRequiredFor() && d.Sign == nil {
		return nil, nil
	}
	// The re-authentication about to be checked counts as the step-up
	// it amounts to (signedStepUp), so the vote is checked with it.
	pre := d
	if pre.StepUp == "" && d.Sign != nil {
		pre.StepUp = policy.StepUpMethodTOTP
		if len(d.Sign.Passkey) > 0 {
			pre.StepUp = policy.StepUpMethodPasskey
		}
	}
	if _, err := s.decide(pol, req, actor, pre, s.now().UTC()); err != nil {
		return nil, err
	}
	if s.signer == nil {
		return nil, refuse(broker.KindForbidden, esign.CodeSignatureRequired, "%s/%s requires an electronic signature and signing is not available on this broker", req.Target, req.Role)
	}
	sig, err := s.signer.Sign(ctx, actor, esign.RequestRecord(decideAction(d), req), d.Sign)
	if err != nil {
		return nil, err
	}
	return &sig, nil
}

// signedStepUp is the step-up a signature's re-authentication amounts
// to: a passkey assertion bound to this decision, or a password and a
// single-use TOTP code, each fresh and consumed by the signature. A role
// with both policy.signature and policy.step_up needs no second
// confirmation.
func signedStepUp(sig *broker.Signature) string {
	if sig == nil {
		return ""
	}
	switch sig.Method {
	case esign.MethodPasskey:
		return policy.StepUpMethodPasskey
	case esign.MethodPasswordTOTP:
		return policy.StepUpMethodTOTP
	}
	return ""
}

// attachSignature checks sig against the request as stored now and puts
// it on actor's vote in next. A role that requires a signature is refused
// without one.
func attachSignature(pol config.Policy, req, next broker.Request, actor string, d Decision, sig *broker.Signature) error {
	if sig == nil {
		if pol.SignatureRequiredFor() {
			return refuse(broker.KindForbidden, esign.CodeSignatureRequired, "%s/%s requires an electronic signature", req.Target, req.Role)
		}
		return nil
	}
	if err := esign.Check(*sig, esign.RequestRecord(decideAction(d), req)); err != nil {
		return err
	}
	votes := next.Approvals
	if !d.Approve {
		votes = next.Denials
	}
	if i := slices.IndexFunc(votes, func(v broker.Decision) bool { return v.By == actor }); i >= 0 {
		votes[i].Signature = sig
	}
	return nil
}
