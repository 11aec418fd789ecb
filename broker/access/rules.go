package access

import (
	"errors"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/policy"
)

// fromPolicy turns a policy refusal into a broker.Error of its kind;
// other errors pass through.
func fromPolicy(err error) error {
	var pe *policy.Error
	if errors.As(err, &pe) {
		return &broker.Error{Kind: kindForPolicyCode(pe.Code), Code: pe.Code, Message: pe.Message}
	}
	return err
}

func (s *Service) checkRequest(pol config.Policy, actor string, in NewRequest, now time.Time) error {
	return fromPolicy(policy.CheckRequest(pol, s.dir, actor, in.Duration, in.Reason, in.Ticket, now))
}

func (s *Service) decide(pol config.Policy, req broker.Request, actor string, d Decision, now time.Time) (broker.Request, error) {
	out, err := policy.Decide(pol, s.dir, req, policy.Decision{By: actor, Approve: d.Approve, Comment: d.Comment, Via: d.Via, At: now})
	if err != nil {
		return broker.Request{}, fromPolicy(err)
	}
	if d.Approve {
		if err := policy.CheckStepUp(pol.StepUp, d.StepUp, "approving "+req.Target+"/"+req.Role); err != nil {
			return broker.Request{}, fromPolicy(err)
		}
	}
	return out.Request, nil
}

// isMemberOfAny reports whether user is named in list directly or through
// one of their groups.
func (s *Service) isMemberOfAny(user string, list []string) bool {
	if slices.Contains(list, user) {
		return true
	}
	for _, g := range s.dir.GroupsOf(user) {
		if slices.Contains(list, g) {
			return true
		}
	}
	return false
}
