package policy

import (
	"testing"
	"time"
)

// withDisabled is dir where some users are disabled: they remain named in
// policies and groups, as a config edit that only sets disabled leaves
// them.
type withDisabled struct {
	Groups
	off map[string]bool
}

func (d withDisabled) Enabled(user string) bool { return !d.off[user] }

// TestDisabledUsersNamedDirectly: a disabled user named directly in a
// policy (not only through a group) can neither approve, deny, request,
// nor count as an eligible approver.
func TestDisabledUsersNamedDirectly(t *testing.T) {
	d := withDisabled{Groups: dir, off: map[string]bool{"frank": true, "alice": true}}
	p := withRequesters(pol(1, "sre", "frank"), "dba", "alice")
	if IsApprover(p, d, "frank") || !IsApprover(p, d, "dave") {
		t.Error("a disabled user named directly is an approver")
	}
	if IsRequester(p, d, "alice") || !IsRequester(p, d, "bob") {
		t.Error("a disabled user named directly is a requester")
	}
	req := pendingRequest(1)
	req.User = "bob"
	for _, dec := range []Decision{approve("frank", created.Add(time.Minute)), deny("frank", created.Add(time.Minute))} {
		_, err := Decide(p, d, req, dec)
		wantCode(t, err, CodeNotApprover)
	}
	// frank is not counted: with sre's two members a 3-approval role has
	// too few eligible approvers.
	if got := eligibleApprovers(pol(3, "sre", "frank"), d, "bob"); len(got) != 2 {
		t.Errorf("eligible approvers %v, want dave and erin", got)
	}
	err := CheckRequest(pol(3, "sre", "frank"), d, "bob", time.Hour, "INC-1", "", created)
	wantCode(t, err, CodeNoEligibleApprovers)
}
