package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// Decision is one approver's vote on a request.
type Decision struct {
	By      string
	Approve bool
	Comment string
	// Via names the channel the vote came through: cli, web or slack.
	Via string
	At  time.Time
}

// Outcome is a request after a decision was applied.
type Outcome struct {
	// Request is an updated copy of the request: the vote recorded, and
	// State and DecidedAt set when the request left pending.
	Request broker.Request
	// Remaining is how many more approvals the request needs; 0 once it
	// is approved or has ended.
	Remaining int
}

// Decide applies d to req under pol and returns the updated request; req
// itself is not modified. The rules, in order:
//
//   - only a pending request can be decided (already_decided, or
//     request_expired for one the scheduler expired);
//   - a decision at or after ExpiresAt is refused (request_expired);
//   - the requester never decides their own request, even when they are
//     also an approver (self_approval);
//   - the decider must be an approver, named or through a group
//     (not_approver);
//   - each approver votes once: approving twice is duplicate_approval,
//     voting after a denial is duplicate_denial; an approver who approved
//     may still deny, which withdraws their approval;
//   - a deny ends the request (denied) when deny_ends is true, the
//     default; otherwise it is recorded and ends the request only once
//     the approvers who have not denied are too few to reach the threshold;
//   - an approval that brings the distinct approvals to the threshold
//     approves the request; if that instant lies outside the role's window
//     the approval is refused (outside_window), because the grant could
//     not start.
//
// The threshold is the larger of req.Required and the policy's current
// approvals, so tightening a policy applies to pending requests too.
func Decide(pol config.Policy, dir Directory, req broker.Request, d Decision) (Outcome, error) {
	switch {
	case req.State == broker.RequestExpired:
		return Outcome{}, refuse(CodeRequestExpired, fmt.Sprintf("request %s has expired", req.ID))
	case req.State != broker.RequestPending:
		return Outcome{}, refuse(CodeAlreadyDecided, fmt.Sprintf("request %s is already %s", req.ID, req.State))
	case Expired(req, d.At):
		return Outcome{}, refuse(CodeRequestExpired, fmt.Sprintf("request %s expired at %s", req.ID, req.ExpiresAt.UTC().Format(time.RFC3339)))
	case d.By == req.User:
		return Outcome{}, refuse(CodeSelfApproval, "you cannot approve or deny your own request; cancel it to withdraw it")
	case !IsApprover(pol, dir, d.By):
		return Outcome{}, refuse(CodeNotApprover, fmt.Sprintf("%s is not an approver for %s/%s", nameOrAnonymous(d.By), req.Target, req.Role))
	case hasVote(req.Denials, d.By):
		return Outcome{}, refuse(CodeDuplicateDenial, fmt.Sprintf("%s already denied request %s", d.By, req.ID))
	case d.Approve && hasVote(req.Approvals, d.By):
		return Outcome{}, refuse(CodeDuplicateApproval, fmt.Sprintf("%s already approved request %s", d.By, req.ID))
	}

	next := req
	next.Approvals = slices.Clone(req.Approvals)
	next.Denials = slices.Clone(req.Denials)
	next.Required = max(req.Required, Approvals(pol))
	vote := broker.Decision{By: d.By, At: d.At, Comment: d.Comment, Via: d.Via}

	if !d.Approve {
		next.Approvals = slices.DeleteFunc(next.Approvals, func(v broker.Decision) bool { return v.By == d.By })
		next.Denials = append(next.Denials, vote)
		if pol.DenyEndsOrDefault() || !reachable(pol, dir, next) {
			next.State, next.DecidedAt = broker.RequestDenied, d.At
			return Outcome{Request: next}, nil
		}
		return Outcome{Request: next, Remaining: remaining(next)}, nil
	}

	next.Approvals = append(next.Approvals, vote)
	if remaining(next) > 0 {
		return Outcome{Request: next, Remaining: remaining(next)}, nil
	}
	w, err := compileWindow(pol.Window)
	if err != nil {
		return Outcome{}, err
	}
	if in, _ := w.contains(d.At); !in {
		return Outcome{}, refuse(CodeOutsideWindow, fmt.Sprintf("this approval would start the grant outside the role's window (%s)", w))
	}
	next.State, next.DecidedAt = broker.RequestApproved, d.At
	return Outcome{Request: next}, nil
}

// Expired reports whether a pending request has expired at now. A request
// is expired from ExpiresAt on: at exactly ExpiresAt it can no longer be
// decided. A zero ExpiresAt never expires.
func Expired(req broker.Request, now time.Time) bool {
	return req.State == broker.RequestPending && !req.ExpiresAt.IsZero() && !now.Before(req.ExpiresAt)
}

// GrantWindow returns when the grant for an approved request starts and
// ends: it starts at approvedAt and lasts the requested duration, capped
// at the policy's current max_duration and clipped at the end of the
// role's window (back-to-back window occurrences count as one). If
// approvedAt lies outside the window, or the window is broken, the grant
// is empty (end == start); Decide never approves there.
func GrantWindow(pol config.Policy, req broker.Request, approvedAt time.Time) (start, end time.Time) {
	d := min(req.Duration, MaxDuration(pol))
	if d <= 0 {
		return approvedAt, approvedAt
	}
	w, err := compileWindow(pol.Window)
	if err != nil {
		return approvedAt, approvedAt
	}
	return approvedAt, w.clip(approvedAt, approvedAt.Add(d))
}

func hasVote(votes []broker.Decision, user string) bool {
	return slices.ContainsFunc(votes, func(v broker.Decision) bool { return v.By == user })
}

// approvers returns the distinct users who approved req, other than the
// requester.
func approvers(req broker.Request) []string {
	var out []string
	for _, a := range req.Approvals {
		if a.By != req.User && !slices.Contains(out, a.By) {
			out = append(out, a.By)
		}
	}
	return out
}

func remaining(req broker.Request) int {
	return max(req.Required-len(approvers(req)), 0)
}

// reachable reports whether the approvers who have not denied req are
// still enough to reach its threshold.
func reachable(pol config.Policy, dir Directory, req broker.Request) bool {
	eligible := eligibleApprovers(pol, dir, req.User)
	n := 0
	for _, u := range eligible {
		if !hasVote(req.Denials, u) {
			n++
		}
	}
	// Approvals already recorded count even if their approver has since
	// left the approver groups, as they do in remaining.
	for _, u := range approvers(req) {
		if !slices.Contains(eligible, u) {
			n++
		}
	}
	return n >= req.Required
}
