package policy

import (
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// CheckExtension decides whether user may ask for extra time on
// grant g under pol at now. The rules of CheckRequest apply to the
// extension as to a new request (the user is still a requester, reason
// and ticket as the role requires, enough approvers, inside the window),
// and max_duration bounds the grant's whole length: from its start to its
// end once extended (extension_exceeds_max). Chained extensions therefore
// never take a grant past max_duration. Whether g is the user's and still
// active is the caller's to check.
func CheckExtension(pol config.Policy, dir Directory, user string, g broker.Grant, extra time.Duration, reason, ticket string, now time.Time) error {
	if err := CheckRequest(pol, dir, user, extra, reason, ticket, now); err != nil {
		return err
	}
	return checkTotal(pol, g, extra)
}

// ExtendedEnd returns the end grant g would have after an approved
// extension by extra at approvedAt: its current end plus extra, clipped
// at the end of the role's window. It refuses (extension_exceeds_max) when
// the grant would then last longer than the policy's current
// max_duration, and (outside_window) when the window leaves no time to
// add.
func ExtendedEnd(pol config.Policy, g broker.Grant, extra time.Duration, approvedAt time.Time) (time.Time, error) {
	if err := checkTotal(pol, g, extra); err != nil {
		return time.Time{}, err
	}
	w, err := compileWindow(pol.Window)
	if err != nil {
		return time.Time{}, err
	}
	from := g.EndsAt
	if from.Before(approvedAt) {
		from = approvedAt
	}
	end := w.clip(from, g.EndsAt.Add(extra))
	if !end.After(g.EndsAt) {
		return time.Time{}, refuse(CodeOutsideWindow, fmt.Sprintf("the role's window (%s) leaves no time to extend the grant", w))
	}
	return end, nil
}

func checkTotal(pol config.Policy, g broker.Grant, extra time.Duration) error {
	if extra <= 0 {
		return refuse(CodeDurationInvalid, "the extension must be greater than zero")
	}
	maxDur := MaxDuration(pol)
	if total := g.EndsAt.Add(extra).Sub(g.StartsAt); total > maxDur {
		left := max(maxDur-g.EndsAt.Sub(g.StartsAt), 0)
		return refuse(CodeExtensionExceedsMax, fmt.Sprintf("extended by %s grant %s would last %s in all, over the role's maximum of %s (at most %s more)",
			extra, g.ID, total.Round(time.Second), maxDur, left.Round(time.Second)))
	}
	return nil
}
