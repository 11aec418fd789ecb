package access

import (
	"github.com/custos-pam/custos/broker"
)

// refuse returns a refusal of the given kind; see broker.Error.
func refuse(kind broker.Kind, code, format string, args ...any) *broker.Error {
	return broker.Refuse(kind, code, format, args...)
}

// kindForPolicyCode classes policy refusal codes: who you are →
// forbidden, the request's state → conflict, what you asked → invalid.
func kindForPolicyCode(code string) broker.Kind {
	switch code {
	case "not_requester", "self_approval", "not_approver", "forbidden", "step_up_required":
		return broker.KindForbidden
	case "already_decided", "duplicate_approval", "duplicate_denial", "request_expired", "not_pending", "grant_not_active":
		return broker.KindConflict
	default:
		return broker.KindInvalid
	}
}
