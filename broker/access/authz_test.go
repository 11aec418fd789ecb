package access_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
)

// Every rule, for every combination of facts: the rules are small enough
// that the table lists who may, and everyone else may not.
func TestAllowed(t *testing.T) {
	type F = access.Facts
	var (
		security  = F{Security: true}
		owner     = F{Owner: true}
		approver  = F{Approver: true}
		approved  = F{Approved: true}
		custodian = F{Custodian: true}
		reviewer  = F{Reviewer: true}
		// An approver of the role who also owns the thing.
		ownApprover = F{Owner: true, Approver: true}
	)
	who := map[string]F{"nobody": {}, "security": security, "owner": owner, "approver": approver, "approved": approved,
		"custodian": custodian, "own-approver": ownApprover, "reviewer": reviewer}
	may := map[access.Action][]string{
		access.ViewRequest:          {"security", "owner", "approver", "own-approver"},
		access.ListAllRequests:      {"security"},
		access.DecideRequest:        {"approver"},
		access.CancelRequest:        {"owner", "own-approver"},
		access.ViewGrant:            {"security", "owner", "approver", "approved", "own-approver"},
		access.RevokeGrant:          {"security", "owner", "approver", "own-approver"},
		access.ViewSession:          {"security", "owner", "approved", "own-approver"},
		access.ExportSession:        {"security", "owner", "approved", "own-approver"},
		access.WatchSession:         {"security", "owner", "approved", "own-approver"},
		access.TerminateSession:     {"security"},
		access.ReadAudit:            {"security"},
		access.ListUsers:            {"security"},
		access.ExportEvidence:       {"security"},
		access.ShareEvidence:        {"security"},
		access.ViewBreakGlass:       {"security", "custodian"},
		access.UnsealBreakGlass:     {"custodian"},
		access.ViewHold:             {"security", "owner", "approver", "own-approver"},
		access.DecideHold:           {"approver"},
		access.ViewReview:           {"security", "reviewer"},
		access.ConductReview:        {"reviewer"},
		access.ViewIndicators:       {"security"},
		access.CloseIndicatorAction: {"security"},
		access.ProfileBroker:        {"security"},
		access.Action("made.up"):    nil,
	}
	for action, allowed := range may {
		for name, f := range who {
			want := false
			for _, a := range allowed {
				want = want || a == name
			}
			if got := access.Allowed(action, f); got != want {
				t.Errorf("%s by %s (%+v): allowed %v, want %v", action, name, f, got, want)
			}
		}
	}
}

const rulesConfig = `
users:
  - {name: alice}
  - {name: dave}
  - {name: bob}
  - {name: sam}
  - {name: olga}
groups:
  - {name: dbas, members: [alice, dave]}
  - {name: approvers, members: [bob]}
  - {name: security, members: [sam]}
security_admins: [security]
targets:
  - name: db
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: ro
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1}
      - name: rw
        policy: {requesters: [dbas], approvers: [olga], approvals: 1}
`

// The facts the service looks up from config: group membership, the
// role's approvers, a grant's approvers.
func TestFactsFromConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(rulesConfig))
	if err != nil {
		t.Fatal(err)
	}
	svc := access.New(access.Options{Config: cfg, Now: time.Now})
	req := broker.Request{ID: "req_1", User: "alice", Target: "db", Role: "ro"}
	grant := broker.Grant{ID: "gr_1", User: "alice", Target: "db", Role: "ro", Approvers: []string{"bob"}}
	rwGrant := broker.Grant{ID: "gr_2", User: "alice", Target: "db", Role: "rw", Approvers: []string{"olga"}}
	sess := broker.Session{ID: "ses_1", User: "alice", GrantID: "gr_1"}
	cases := []struct {
		user              string
		viewReq, decide   bool
		viewGrant, revoke bool
		viewRW            bool
		viewSess          bool
		terminate, audit  bool
		decideErr         string
	}{
		{user: "alice", viewReq: true, viewGrant: true, revoke: true, viewRW: true, viewSess: true, decideErr: "self_approval"},
		{user: "dave", decideErr: "not_approver"},
		{user: "bob", viewReq: true, decide: true, viewGrant: true, revoke: true, viewSess: true},
		{user: "olga", decideErr: "not_approver", viewRW: true},
		{user: "sam", viewReq: true, viewGrant: true, revoke: true, viewRW: true, viewSess: true, terminate: true, audit: true, decideErr: "not_approver"},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			got := []bool{
				access.Allowed(access.ViewRequest, svc.RequestFacts(c.user, req)),
				access.Allowed(access.DecideRequest, svc.RequestFacts(c.user, req)),
				access.Allowed(access.ViewGrant, svc.GrantFacts(c.user, grant)),
				access.Allowed(access.RevokeGrant, svc.GrantFacts(c.user, grant)),
				access.Allowed(access.ViewGrant, svc.GrantFacts(c.user, rwGrant)),
				access.Allowed(access.ViewSession, svc.SessionFacts(c.user, sess, &grant)),
				svc.May(c.user, access.TerminateSession),
				svc.May(c.user, access.ReadAudit),
			}
			want := []bool{c.viewReq, c.decide, c.viewGrant, c.revoke, c.viewRW, c.viewSess, c.terminate, c.audit}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("view request, decide, view grant, revoke, view rw grant, view session, terminate, audit:\n got %v\nwant %v", got, want)
			}
			if code := broker.CodeOf(svc.CheckDecide(c.user, req)); code != c.decideErr {
				t.Errorf("CheckDecide: code %q, want %q", code, c.decideErr)
			}
		})
	}
}
