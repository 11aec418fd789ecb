package policy

import (
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

var (
	created = utc(2026, 1, 5, 12, 0)
	expires = created.Add(30 * time.Minute)
	noDeny  = false
)

func pendingRequest(required int) broker.Request {
	return broker.Request{
		ID: "req_1", User: "alice", Target: "prod-db", Role: "rw", Duration: time.Hour,
		State: broker.RequestPending, Required: required, Approvals: []broker.Decision{},
		CreatedAt: created, ExpiresAt: expires,
	}
}

func approve(by string, at time.Time) Decision {
	return Decision{By: by, Approve: true, At: at, Via: "cli"}
}
func deny(by string, at time.Time) Decision {
	return Decision{By: by, Approve: false, At: at, Via: "slack"}
}

func TestDecide(t *testing.T) {
	t1, t2, t3 := created.Add(time.Minute), created.Add(2*time.Minute), created.Add(3*time.Minute)
	tests := []struct {
		name string
		pol  config.Policy
		// req defaults to pendingRequest(pol.Approvals).
		req   *broker.Request
		steps []Decision // every step but the last must succeed
		code  string     // refusal of the last step, "" for none
		state broker.RequestState
		// approvers and deniers after the last step, in order.
		approvals []string
		denials   []string
		remaining int
	}{
		{name: "one of one approves", pol: pol(1, "sre"), steps: []Decision{approve("dave", t1)},
			state: broker.RequestApproved, approvals: []string{"dave"}},
		{name: "N-1 of N stays pending", pol: pol(3, "sre", "oncall"), steps: []Decision{approve("dave", t1), approve("erin", t2)},
			state: broker.RequestPending, approvals: []string{"dave", "erin"}, remaining: 1},
		{name: "exactly N of N approves", pol: pol(3, "sre", "oncall"), steps: []Decision{approve("dave", t1), approve("erin", t2), approve("bob", t3)},
			state: broker.RequestApproved, approvals: []string{"dave", "erin", "bob"}},
		{name: "duplicate approval is refused and not counted", pol: pol(2, "sre"), steps: []Decision{approve("dave", t1), approve("dave", t2)},
			code: CodeDuplicateApproval, state: broker.RequestPending, approvals: []string{"dave"}, remaining: 1},
		{name: "named user approver", pol: pol(1, "sre", "frank"), steps: []Decision{approve("frank", t1)},
			state: broker.RequestApproved, approvals: []string{"frank"}},
		{name: "not an approver", pol: pol(1, "sre"), steps: []Decision{approve("carol", t1)}, code: CodeNotApprover, state: broker.RequestPending},
		{name: "not an approver may not deny either", pol: pol(1, "sre"), steps: []Decision{deny("carol", t1)}, code: CodeNotApprover, state: broker.RequestPending},
		{name: "anonymous decider", pol: pol(1, "sre"), steps: []Decision{approve("", t1)}, code: CodeNotApprover, state: broker.RequestPending},
		{name: "requester in approver group cannot self-approve", pol: pol(1, "dba"), steps: []Decision{approve("alice", t1)},
			code: CodeSelfApproval, state: broker.RequestPending},
		{name: "requester named as approver cannot self-approve", pol: pol(1, "alice", "sre"), steps: []Decision{approve("alice", t1)},
			code: CodeSelfApproval, state: broker.RequestPending},
		{name: "requester cannot deny their own request", pol: pol(1, "dba"), steps: []Decision{deny("alice", t1)},
			code: CodeSelfApproval, state: broker.RequestPending},
		{name: "approver who is also in the requester group", pol: withRequesters(pol(1, "dba"), "dba"), steps: []Decision{approve("bob", t1)},
			state: broker.RequestApproved, approvals: []string{"bob"}},
		{name: "deny ends the request by default", pol: pol(2, "sre"), steps: []Decision{deny("dave", t1)},
			state: broker.RequestDenied, denials: []string{"dave"}},
		{name: "deny after another approver approved", pol: pol(2, "sre"), steps: []Decision{approve("dave", t1), deny("erin", t2)},
			state: broker.RequestDenied, approvals: []string{"dave"}, denials: []string{"erin"}},
		{name: "approver changes approval to deny", pol: pol(2, "sre"), steps: []Decision{approve("dave", t1), deny("dave", t2)},
			state: broker.RequestDenied, denials: []string{"dave"}},
		{name: "approve after the request was denied", pol: pol(2, "sre", "oncall"), steps: []Decision{deny("dave", t1), approve("erin", t2)},
			code: CodeAlreadyDecided, state: broker.RequestDenied, denials: []string{"dave"}},
		{name: "deny_ends false: deny recorded, still reachable", pol: denyRecorded(pol(2, "sre", "oncall")), steps: []Decision{deny("dave", t1)},
			state: broker.RequestPending, denials: []string{"dave"}, remaining: 2},
		{name: "deny_ends false: approvals can still win", pol: denyRecorded(pol(2, "sre", "oncall")), steps: []Decision{deny("dave", t1), approve("erin", t2), approve("bob", t3)},
			state: broker.RequestApproved, approvals: []string{"erin", "bob"}, denials: []string{"dave"}},
		{name: "deny_ends false: ends once unreachable", pol: denyRecorded(pol(2, "sre", "oncall")), steps: []Decision{deny("dave", t1), deny("erin", t2)},
			state: broker.RequestDenied, denials: []string{"dave", "erin"}},
		{name: "deny_ends false: deny after approve withdraws the approval", pol: denyRecorded(pol(2, "sre", "oncall")), steps: []Decision{approve("dave", t1), deny("dave", t2)},
			state: broker.RequestPending, denials: []string{"dave"}, remaining: 2},
		{name: "deny_ends false: approve after own deny", pol: denyRecorded(pol(2, "sre", "oncall")), steps: []Decision{deny("dave", t1), approve("dave", t2)},
			code: CodeDuplicateDenial, state: broker.RequestPending, denials: []string{"dave"}, remaining: 2},
		{name: "deny_ends false: deny twice", pol: denyRecorded(pol(2, "sre", "oncall")), steps: []Decision{deny("dave", t1), deny("dave", t2)},
			code: CodeDuplicateDenial, state: broker.RequestPending, denials: []string{"dave"}, remaining: 2},
		{name: "decision one nanosecond before expiry counts", pol: pol(1, "sre"), steps: []Decision{approve("dave", expires.Add(-1))},
			state: broker.RequestApproved, approvals: []string{"dave"}},
		{name: "decision at exactly ExpiresAt is refused", pol: pol(1, "sre"), steps: []Decision{approve("dave", expires)},
			code: CodeRequestExpired, state: broker.RequestPending},
		{name: "deny after expiry is refused", pol: pol(1, "sre"), steps: []Decision{deny("dave", expires.Add(time.Second))},
			code: CodeRequestExpired, state: broker.RequestPending},
		{name: "expiry checked before eligibility", pol: pol(1, "sre"), steps: []Decision{approve("alice", expires)},
			code: CodeRequestExpired, state: broker.RequestPending},
		{name: "request the scheduler expired", pol: pol(1, "sre"), req: withState(broker.RequestExpired), steps: []Decision{approve("dave", t1)},
			code: CodeRequestExpired, state: broker.RequestExpired},
		{name: "cancelled request", pol: pol(1, "sre"), req: withState(broker.RequestCancelled), steps: []Decision{approve("dave", t1)},
			code: CodeAlreadyDecided, state: broker.RequestCancelled},
		{name: "approved request takes no more votes", pol: pol(1, "sre"), steps: []Decision{approve("dave", t1), approve("erin", t2)},
			code: CodeAlreadyDecided, state: broker.RequestApproved, approvals: []string{"dave"}},
		{name: "policy tightened while pending", pol: pol(2, "sre"), req: withRequired(1), steps: []Decision{approve("dave", t1)},
			state: broker.RequestPending, approvals: []string{"dave"}, remaining: 1},
		{name: "policy loosened while pending", pol: pol(1, "sre"), req: withRequired(2), steps: []Decision{approve("dave", t1)},
			state: broker.RequestPending, approvals: []string{"dave"}, remaining: 1},
		{name: "final approval outside the window", pol: withPolWindow(pol(1, "sre"), &config.Window{Start: "09:00", End: "12:01"}),
			steps: []Decision{approve("dave", t1)}, code: CodeOutsideWindow, state: broker.RequestPending},
		{name: "final approval at the last window minute", pol: withPolWindow(pol(1, "sre"), &config.Window{Start: "09:00", End: "12:02"}),
			steps: []Decision{approve("dave", t1)}, state: broker.RequestApproved, approvals: []string{"dave"}},
		{name: "non-final approval outside the window is recorded", pol: withPolWindow(pol(2, "sre"), &config.Window{Start: "09:00", End: "12:00"}),
			steps: []Decision{approve("dave", t1)}, state: broker.RequestPending, approvals: []string{"dave"}, remaining: 1},
		{name: "deny outside the window counts", pol: withPolWindow(pol(1, "sre"), &config.Window{Start: "09:00", End: "12:00"}),
			steps: []Decision{deny("dave", t1)}, state: broker.RequestDenied, denials: []string{"dave"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := pendingRequest(tt.pol.Approvals)
			if tt.req != nil {
				req = *tt.req
			}
			var err error
			for i, d := range tt.steps {
				var out Outcome
				out, err = Decide(tt.pol, dir, req, d)
				if i < len(tt.steps)-1 && err != nil {
					t.Fatalf("step %d (%+v): %v", i, d, err)
				}
				if err == nil {
					req = out.Request
					if out.Remaining != remaining(req) && req.State == broker.RequestPending {
						t.Fatalf("step %d: Remaining = %d, recount %d", i, out.Remaining, remaining(req))
					}
					if i == len(tt.steps)-1 && out.Remaining != tt.remaining {
						t.Errorf("Remaining = %d, want %d", out.Remaining, tt.remaining)
					}
				}
			}
			wantCode(t, err, tt.code)
			if req.State != tt.state {
				t.Errorf("state = %s, want %s", req.State, tt.state)
			}
			if got := voters(req.Approvals); !slices.Equal(got, tt.approvals) {
				t.Errorf("approvals = %v, want %v", got, tt.approvals)
			}
			if got := voters(req.Denials); !slices.Equal(got, tt.denials) {
				t.Errorf("denials = %v, want %v", got, tt.denials)
			}
			if decided := req.State == broker.RequestApproved || req.State == broker.RequestDenied; decided && req.DecidedAt.IsZero() {
				t.Error("DecidedAt not set on a decided request")
			}
		})
	}
}

func TestDecideRecordsTheVote(t *testing.T) {
	out, err := Decide(pol(1, "sre"), dir, pendingRequest(1), Decision{By: "dave", Approve: true, Comment: "ok", Via: "slack", At: created.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	want := broker.Decision{By: "dave", At: created.Add(time.Minute), Comment: "ok", Via: "slack"}
	if len(out.Request.Approvals) != 1 || out.Request.Approvals[0] != want {
		t.Fatalf("approvals = %+v", out.Request.Approvals)
	}
	if !out.Request.DecidedAt.Equal(want.At) || out.Request.Required != 1 {
		t.Fatalf("decided at %v, required %d", out.Request.DecidedAt, out.Request.Required)
	}
}

func TestDecideDoesNotModifyItsInput(t *testing.T) {
	req := pendingRequest(3)
	req.Approvals = make([]broker.Decision, 1, 8) // spare capacity an append could write into
	req.Approvals[0] = broker.Decision{By: "dave", At: created}
	shared := req.Approvals[:cap(req.Approvals)]
	out, err := Decide(pol(3, "sre", "oncall"), dir, req, approve("erin", created.Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Request.Approvals) != 2 || shared[1].By != "" || len(req.Approvals) != 1 || req.State != broker.RequestPending {
		t.Fatalf("input modified: %+v / %+v", req.Approvals, shared[1])
	}
	out, err = Decide(pol(3, "sre", "oncall"), dir, out.Request, deny("dave", created.Add(2*time.Minute)))
	if err != nil || out.Request.State != broker.RequestDenied {
		t.Fatalf("deny: %v %s", err, out.Request.State)
	}
	if req.Approvals[0].By != "dave" {
		t.Fatalf("withdrawing an approval modified the input: %+v", req.Approvals)
	}
}

func TestExpired(t *testing.T) {
	req := pendingRequest(1)
	for _, tt := range []struct {
		now  time.Time
		want bool
	}{{expires.Add(-1), false}, {expires, true}, {expires.Add(time.Hour), true}} {
		if got := Expired(req, tt.now); got != tt.want {
			t.Errorf("Expired at %v = %v", tt.now, got)
		}
	}
	req.State = broker.RequestApproved
	if Expired(req, expires.Add(time.Hour)) {
		t.Error("an approved request does not expire")
	}
	req = pendingRequest(1)
	req.ExpiresAt = time.Time{}
	if Expired(req, expires.Add(time.Hour)) {
		t.Error("a request without ExpiresAt does not expire")
	}
}

func TestIsApproverAndRequester(t *testing.T) {
	p := withRequesters(pol(1, "sre", "frank"), "dba")
	for _, tt := range []struct {
		user                string
		approver, requester bool
	}{
		{"dave", true, false}, {"frank", true, false}, {"alice", false, true}, {"mallory", false, false}, {"", false, false},
	} {
		if got := IsApprover(p, dir, tt.user); got != tt.approver {
			t.Errorf("IsApprover(%q) = %v", tt.user, got)
		}
		if got := IsRequester(p, dir, tt.user); got != tt.requester {
			t.Errorf("IsRequester(%q) = %v", tt.user, got)
		}
	}
	if IsApprover(p, nil, "dave") || !IsApprover(p, nil, "frank") {
		t.Error("a nil directory matches named users only")
	}
}

func pol(n int, approvers ...string) config.Policy {
	return config.Policy{Approvers: approvers, Approvals: n, MaxDuration: config.Duration(8 * time.Hour)}
}

func withRequesters(p config.Policy, r ...string) config.Policy { p.Requesters = r; return p }
func denyRecorded(p config.Policy) config.Policy                { p.DenyEnds = &noDeny; return p }
func withPolWindow(p config.Policy, w *config.Window) config.Policy {
	p.Window = w
	return p
}

func withState(s broker.RequestState) *broker.Request {
	r := pendingRequest(1)
	r.State = s
	return &r
}

func withRequired(n int) *broker.Request {
	r := pendingRequest(n)
	return &r
}

func voters(ds []broker.Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.By)
	}
	return out
}
