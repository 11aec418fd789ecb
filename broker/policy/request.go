package policy

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/config"
)

// Defaults used when a policy field is zero. config.ApplyDefaults sets the
// same values; the package applies them again so that a policy built by
// hand behaves the same.
const (
	DefaultMaxDuration = 8 * time.Hour
	DefaultRequestTTL  = 30 * time.Minute
	DefaultApprovals   = 1
)

// MaxDuration is the longest grant the policy allows.
func MaxDuration(pol config.Policy) time.Duration {
	if pol.MaxDuration > 0 {
		return pol.MaxDuration.D()
	}
	return DefaultMaxDuration
}

// RequestTTL is how long a request made under the policy stays pending.
func RequestTTL(pol config.Policy) time.Duration {
	if pol.RequestTTL > 0 {
		return pol.RequestTTL.D()
	}
	return DefaultRequestTTL
}

// Approvals is how many distinct approvals the policy requires.
func Approvals(pol config.Policy) int {
	return max(pol.Approvals, DefaultApprovals)
}

// CheckRequest decides whether user may ask for duration of access under
// pol at now. It checks, in this order: the user is a requester; the
// duration is positive and within max_duration; a reason and a ticket are
// present when required, and the ticket matches ticket_pattern in full;
// enough approvers other than the user exist to meet the threshold; and
// now lies inside the window. A refusal is an *Error; any other error
// means the policy itself is broken (config validation rules that out).
//
// A request inside the window may ask for more time than the window has
// left; the grant is then clipped at the window's end (see GrantWindow).
func CheckRequest(pol config.Policy, dir Directory, user string, duration time.Duration, reason, ticket string, now time.Time) error {
	if !IsRequester(pol, dir, user) {
		return refuse(CodeNotRequester, fmt.Sprintf("%s may not request this role", nameOrAnonymous(user)))
	}
	if duration <= 0 {
		return refuse(CodeDurationInvalid, "the requested duration must be greater than zero")
	}
	if maxDur := MaxDuration(pol); duration > maxDur {
		return refuse(CodeDurationExceedsMax, fmt.Sprintf("requested duration %s exceeds the role's maximum of %s", duration, maxDur))
	}
	if pol.RequireReason && strings.TrimSpace(reason) == "" {
		return refuse(CodeReasonRequired, "this role requires a reason")
	}
	if pol.RequireTicket && strings.TrimSpace(ticket) == "" {
		return refuse(CodeTicketRequired, "this role requires a ticket")
	}
	if ticket != "" && pol.TicketPattern != "" {
		re, err := regexp.Compile(`^(?:` + pol.TicketPattern + `)$`)
		if err != nil {
			return fmt.Errorf("policy: ticket_pattern: %w", err)
		}
		if !re.MatchString(ticket) {
			return refuse(CodeTicketMalformed, fmt.Sprintf("ticket %q does not match the required pattern %s", ticket, pol.TicketPattern))
		}
	}
	if n, need := len(eligibleApprovers(pol, dir, user)), Approvals(pol); n < need {
		return refuse(CodeNoEligibleApprovers, fmt.Sprintf("this role needs %d approvals but only %d eligible approvers other than %s exist", need, n, user))
	}
	w, err := compileWindow(pol.Window)
	if err != nil {
		return err
	}
	if in, _ := w.contains(now); !in {
		return refuse(CodeOutsideWindow, fmt.Sprintf("requests for this role may only be made %s", w))
	}
	return nil
}

func nameOrAnonymous(user string) string {
	if user == "" {
		return "an anonymous user"
	}
	return user
}
