package policy

import "errors"

// Refusal codes. They are part of the API: clients match on them.
const (
	// CodeNotRequester: the user is not among the role's requesters.
	CodeNotRequester = "not_requester"
	// CodeDurationInvalid: the requested duration is zero or negative.
	CodeDurationInvalid = "duration_invalid"
	// CodeDurationExceedsMax: the requested duration is over max_duration.
	CodeDurationExceedsMax = "duration_exceeds_max"
	// CodeReasonRequired: the role requires a reason and none was given.
	CodeReasonRequired = "reason_required"
	// CodeTicketRequired: the role requires a ticket and none was given.
	CodeTicketRequired = "ticket_required"
	// CodeTicketMalformed: the ticket does not match ticket_pattern.
	CodeTicketMalformed = "ticket_malformed"
	// CodeOutsideWindow: the request or the grant it would start falls
	// outside the role's time window.
	CodeOutsideWindow = "outside_window"
	// CodeNoEligibleApprovers: fewer eligible approvers exist than the
	// role requires, so the request could never be approved.
	CodeNoEligibleApprovers = "no_eligible_approvers"
	// CodeSelfApproval: the requester tried to decide their own request.
	CodeSelfApproval = "self_approval"
	// CodeNotApprover: the user is not an eligible approver for the role.
	CodeNotApprover = "not_approver"
	// CodeAlreadyDecided: the request is no longer pending.
	CodeAlreadyDecided = "already_decided"
	// CodeDuplicateApproval: the approver already approved this request.
	CodeDuplicateApproval = "duplicate_approval"
	// CodeDuplicateDenial: the approver already denied this request.
	CodeDuplicateDenial = "duplicate_denial"
	// CodeRequestExpired: the request expired before the decision.
	CodeRequestExpired = "request_expired"
	// CodeExtensionExceedsMax: the grant, extended, would last longer in
	// all than max_duration.
	CodeExtensionExceedsMax = "extension_exceeds_max"
)

// Error is a policy refusal. Message is meant for the person who asked and
// never contains a secret.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// ErrorCode returns the machine-readable code.
func (e *Error) ErrorCode() string { return e.Code }

// CodeOf returns the code of the *Error in err's chain, or "" when err is
// not a policy refusal (for example a broken policy in the config).
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func refuse(code, msg string) *Error { return &Error{Code: code, Message: msg} }
