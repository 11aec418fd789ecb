package policy

import (
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
)

func TestCheckRequest(t *testing.T) {
	monNoon := utc(2026, 1, 5, 12, 0) // a Monday
	base := func() config.Policy {
		return config.Policy{Requesters: []string{"dba"}, Approvers: []string{"sre"}, Approvals: 1, MaxDuration: config.Duration(8 * time.Hour)}
	}
	tests := []struct {
		name     string
		pol      func(*config.Policy)
		user     string
		duration time.Duration
		reason   string
		ticket   string
		now      time.Time
		code     string
	}{
		{name: "requester through group", user: "alice", duration: time.Hour},
		{name: "requester named directly", pol: func(p *config.Policy) { p.Requesters = []string{"dba", "frank"} }, user: "frank", duration: time.Hour},
		{name: "not a requester", user: "dave", duration: time.Hour, code: CodeNotRequester},
		{name: "unknown user is not a requester", user: "mallory", duration: time.Hour, code: CodeNotRequester},
		{name: "empty requesters lets anyone request", pol: func(p *config.Policy) { p.Requesters = nil }, user: "frank", duration: time.Hour},
		{name: "empty user name never requests", pol: func(p *config.Policy) { p.Requesters = nil }, user: "", duration: time.Hour, code: CodeNotRequester},
		{name: "zero duration", user: "alice", duration: 0, code: CodeDurationInvalid},
		{name: "negative duration", user: "alice", duration: -time.Minute, code: CodeDurationInvalid},
		{name: "exactly the maximum", user: "alice", duration: 8 * time.Hour},
		{name: "one nanosecond over the maximum", user: "alice", duration: 8*time.Hour + 1, code: CodeDurationExceedsMax},
		{name: "default maximum is 8h", pol: func(p *config.Policy) { p.MaxDuration = 0 }, user: "alice", duration: 8 * time.Hour},
		{name: "default maximum refuses more", pol: func(p *config.Policy) { p.MaxDuration = 0 }, user: "alice", duration: 8*time.Hour + time.Second, code: CodeDurationExceedsMax},
		{name: "reason required and missing", pol: func(p *config.Policy) { p.RequireReason = true }, user: "alice", duration: time.Hour, code: CodeReasonRequired},
		{name: "reason required and blank", pol: func(p *config.Policy) { p.RequireReason = true }, user: "alice", duration: time.Hour, reason: " \t", code: CodeReasonRequired},
		{name: "reason required and given", pol: func(p *config.Policy) { p.RequireReason = true }, user: "alice", duration: time.Hour, reason: "INC-1 disk full"},
		{name: "ticket required and missing", pol: func(p *config.Policy) { p.RequireTicket = true }, user: "alice", duration: time.Hour, code: CodeTicketRequired},
		{name: "ticket required, any ticket", pol: func(p *config.Policy) { p.RequireTicket = true }, user: "alice", duration: time.Hour, ticket: "whatever"},
		{name: "ticket matches in full", pol: ticketPattern(`INC-\d+`), user: "alice", duration: time.Hour, ticket: "INC-42"},
		{name: "ticket with leading junk", pol: ticketPattern(`INC-\d+`), user: "alice", duration: time.Hour, ticket: "xINC-42", code: CodeTicketMalformed},
		{name: "ticket with trailing junk", pol: ticketPattern(`INC-\d+`), user: "alice", duration: time.Hour, ticket: "INC-42x", code: CodeTicketMalformed},
		{name: "alternation is anchored as a whole", pol: ticketPattern(`INC-\d+|CHG-\d+`), user: "alice", duration: time.Hour, ticket: "INC-1x", code: CodeTicketMalformed},
		{name: "alternation second branch", pol: ticketPattern(`INC-\d+|CHG-\d+`), user: "alice", duration: time.Hour, ticket: "CHG-7"},
		{name: "optional ticket still checked", pol: func(p *config.Policy) { p.TicketPattern = `INC-\d+` }, user: "alice", duration: time.Hour, ticket: "nope", code: CodeTicketMalformed},
		{name: "ticket required and blank", pol: func(p *config.Policy) { p.RequireTicket = true }, user: "alice", duration: time.Hour, ticket: "  ", code: CodeTicketRequired},
		{name: "ticket with a trailing space", pol: ticketPattern(`INC-\d+`), user: "alice", duration: time.Hour, ticket: "INC-42 ", code: CodeTicketMalformed},
		{name: "optional ticket absent", pol: func(p *config.Policy) { p.TicketPattern = `INC-\d+` }, user: "alice", duration: time.Hour},
		{name: "too few approvers besides the requester", pol: withApprovers(3, "dba"), user: "alice", duration: time.Hour, code: CodeNoEligibleApprovers},
		{name: "just enough approvers besides the requester", pol: withApprovers(2, "dba"), user: "alice", duration: time.Hour},
		{name: "approver counted once across groups", pol: withApprovers(4, "dba", "oncall"), user: "alice", duration: time.Hour, code: CodeNoEligibleApprovers},
		{name: "groups and named users add up", pol: withApprovers(4, "dba", "oncall", "frank"), user: "alice", duration: time.Hour},
		{name: "inside the window", pol: withWindow(&config.Window{Start: "09:00", End: "18:00"}), user: "alice", duration: time.Hour, now: monNoon},
		{name: "outside the window", pol: withWindow(&config.Window{Start: "09:00", End: "18:00"}), user: "alice", duration: time.Hour, now: utc(2026, 1, 5, 18, 0), code: CodeOutsideWindow},
		{name: "longer than the window has left is allowed", pol: withWindow(&config.Window{Start: "09:00", End: "18:00"}), user: "alice", duration: 8 * time.Hour, now: utc(2026, 1, 5, 17, 59)},
		{name: "who is checked before what", pol: func(p *config.Policy) { p.RequireReason = true }, user: "dave", duration: -1, code: CodeNotRequester},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := base()
			if tt.pol != nil {
				tt.pol(&pol)
			}
			now := tt.now
			if now.IsZero() {
				now = monNoon
			}
			wantCode(t, CheckRequest(pol, dir, tt.user, tt.duration, tt.reason, tt.ticket, now), tt.code)
		})
	}
}

func TestCheckRequestBrokenPolicy(t *testing.T) {
	for name, pol := range map[string]config.Policy{
		"bad ticket pattern": {Approvers: []string{"sre"}, TicketPattern: "INC-(", RequireTicket: true},
		"bad time zone":      {Approvers: []string{"sre"}, Window: &config.Window{TZ: "Mars/Olympus"}},
		"bad clock":          {Approvers: []string{"sre"}, Window: &config.Window{Start: "9am"}},
	} {
		err := CheckRequest(pol, dir, "alice", time.Hour, "", "INC-1", utc(2026, 1, 5, 12, 0))
		if err == nil || CodeOf(err) != "" {
			t.Errorf("%s: want a non-refusal error, got %v (code %q)", name, err, CodeOf(err))
		}
	}
}

func TestDefaults(t *testing.T) {
	var p config.Policy
	if MaxDuration(p) != 8*time.Hour || RequestTTL(p) != 30*time.Minute || Approvals(p) != 1 {
		t.Fatalf("defaults: %v %v %v", MaxDuration(p), RequestTTL(p), Approvals(p))
	}
	p = config.Policy{MaxDuration: config.Duration(time.Hour), RequestTTL: config.Duration(time.Minute), Approvals: 3}
	if MaxDuration(p) != time.Hour || RequestTTL(p) != time.Minute || Approvals(p) != 3 {
		t.Fatalf("explicit: %v %v %v", MaxDuration(p), RequestTTL(p), Approvals(p))
	}
}

func ticketPattern(re string) func(*config.Policy) {
	return func(p *config.Policy) { p.RequireTicket, p.TicketPattern = true, re }
}

func withApprovers(n int, names ...string) func(*config.Policy) {
	return func(p *config.Policy) { p.Approvals, p.Approvers = n, names }
}

func withWindow(w *config.Window) func(*config.Policy) {
	return func(p *config.Policy) { p.Window = w }
}
