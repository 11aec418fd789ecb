package slack

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/custos-pam/custos/broker"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func baseRequest() broker.Request {
	return broker.Request{ID: "req_abc", User: "alice", Target: "demo-pg", Role: "readwrite", Reason: "migrate",
		Duration: 90 * time.Minute, State: broker.RequestPending, Required: 2, CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute)}
}

func renderJSON(t *testing.T, m message) (string, string, []string) {
	t.Helper()
	text, blocks := m.render()
	b, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, blk := range blocks {
		if a, ok := blk.(*slack.ActionBlock); ok {
			for _, el := range a.Elements.ElementSet {
				if btn, ok := el.(*slack.ButtonBlockElement); ok {
					actions = append(actions, btn.ActionID)
				}
			}
		}
	}
	return text, string(b), actions
}

func TestRenderStates(t *testing.T) {
	approved := baseRequest()
	approved.State, approved.DecidedAt, approved.GrantID = broker.RequestApproved, t0.Add(time.Minute), "gr_1"
	approved.Approvals = []broker.Decision{{By: "bob", At: t0}, {By: "carol", At: t0.Add(time.Minute)}}
	grant := &broker.Grant{ID: "gr_1", State: broker.GrantActive, EndsAt: t0.Add(150 * time.Minute)}
	revoked := *grant
	revoked.State, revoked.RevokedBy, revoked.RevokedAt, revoked.RevokeReason = broker.GrantRevoked, "sam", t0.Add(time.Hour), "done"
	denied := baseRequest()
	denied.State, denied.DecidedAt = broker.RequestDenied, t0.Add(time.Minute)
	denied.Denials = []broker.Decision{{By: "carol", At: t0, Comment: "<!channel> no"}}
	expired := baseRequest()
	expired.State, expired.DecidedAt = broker.RequestExpired, expired.ExpiresAt
	expired.Approvals = []broker.Decision{{By: "bob", At: t0}}
	cancelled := baseRequest()
	cancelled.State = broker.RequestCancelled

	cases := []struct {
		name        string
		m           message
		wantActions []string
		want        []string
		notWant     []string
	}{
		{"pending", message{Req: baseRequest(), ApproveInSlack: true, RequestURL: "https://c.test/ui/requests/req_abc"},
			[]string{actionApprove, actionDeny, actionOpen},
			[]string{"0 of 2", "*Duration*\n1h30m", "waiting for 2 more approvals", "*Expires*\n<!date^"}, nil},
		{"pending without public URL", message{Req: baseRequest(), ApproveInSlack: true},
			[]string{actionApprove, actionDeny}, []string{"`req_abc`"}, []string{"ui/requests"}},
		{"web only", message{Req: baseRequest(), RequestURL: "https://c.test/ui/requests/req_abc"},
			[]string{actionOpen}, []string{"second factor"}, nil},
		{"web only without URL", message{Req: baseRequest()}, nil, []string{"custos approve req_abc"}, nil},
		{"approved", message{Req: approved, Grant: grant, ApproveInSlack: true}, nil,
			[]string{"2 of 2", "Approved by *bob*", "Approved by *carol*", "Access granted until <!date^" + itoa(grant.EndsAt.Unix())}, []string{"Expires"}},
		{"revoked later", message{Req: approved, Grant: &revoked, ApproveInSlack: true}, nil,
			[]string{"*revoked* by *sam*", ": done"}, []string{"granted until"}},
		{"denied, mention escaped", message{Req: denied, ApproveInSlack: true}, nil,
			[]string{"*Denied* by *carol*: &lt;!channel&gt; no"}, []string{"<!channel>"}},
		{"expired", message{Req: expired, ApproveInSlack: true}, nil, []string{"*Expired*", "1 of 2"}, nil},
		{"cancelled", message{Req: cancelled, ApproveInSlack: true}, nil, []string{"*Cancelled* by *alice*"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text, blocks, actions := renderJSON(t, tc.m)
			if strings.Join(actions, ",") != strings.Join(tc.wantActions, ",") {
				t.Errorf("actions = %v, want %v", actions, tc.wantActions)
			}
			var decoded []any
			if err := json.Unmarshal([]byte(blocks), &decoded); err != nil {
				t.Fatal(err)
			}
			seen := text + "\n" + unescapeJSON(blocks)
			for _, w := range tc.want {
				if !strings.Contains(seen, w) {
					t.Errorf("missing %q in\n%s", w, seen)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(seen, w) {
					t.Errorf("unexpected %q in\n%s", w, seen)
				}
			}
		})
	}
}

// unescapeJSON undoes JSON's escaping of <, > and & and newlines so
// assertions can use Slack's own notation.
func unescapeJSON(s string) string {
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&", `\n`, "\n").Replace(s)
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestFingerprintChangesWithWhatIsShown(t *testing.T) {
	r := baseRequest()
	fps := map[string]string{"pending": fingerprint(r, nil)}
	r.Approvals = []broker.Decision{{By: "bob"}}
	fps["one approval"] = fingerprint(r, nil)
	r.State = broker.RequestApproved
	g := &broker.Grant{State: broker.GrantActive}
	fps["approved"] = fingerprint(r, g)
	g.State = broker.GrantRevoked
	fps["revoked"] = fingerprint(r, g)
	seen := map[string]string{}
	for name, fp := range fps {
		if other, dup := seen[fp]; dup {
			t.Errorf("%s and %s share fingerprint %q", name, other, fp)
		}
		seen[fp] = name
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{time.Hour, "1h"}, {90 * time.Minute, "1h30m"}, {45 * time.Minute, "45m"}, {8 * time.Hour, "8h"}, {0, "0m"}, {30 * time.Second, "1m"}} {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("formatDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"<@U123> & <!here>", "&lt;@U123&gt; &amp; &lt;!here&gt;"},
		{"plain", "plain"},
	} {
		if got := escape(tc.in); got != tc.want {
			t.Errorf("escape(%q) = %q", tc.in, got)
		}
	}
	m := message{Req: broker.Request{Ticket: "INC 1|<x>"}, TicketURL: "https://t.test/{ticket}"}
	if got := m.ticket(); got != "<https://t.test/INC%201%7C%3Cx%3E|INC 1¦&lt;x&gt;>" {
		t.Errorf("ticket link = %q", got)
	}
	if got := clip("ééééé", 3); got != "éé…" {
		t.Errorf("clip = %q", got)
	}
}

func TestBackoffGrowsToItsCap(t *testing.T) {
	s := &Slack{t: timings{retryBase: time.Second, retryMax: 8 * time.Second}}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 10: 8 * time.Second} {
		got := s.backoff(attempts)
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("backoff(%d) = %s, want %s ±20%%", attempts, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		retryAfter time.Duration
		uncertain  bool
		fatal      bool
	}{
		{"rate limited", &slack.RateLimitedError{RetryAfter: 3 * time.Second}, 3 * time.Second, false, false},
		{"rate limited without a wait", &slack.RateLimitedError{}, time.Second, false, false},
		{"server error", slack.StatusCodeError{Code: 500}, 0, true, false},
		{"not found", slack.StatusCodeError{Code: 404}, 0, false, false},
		{"refused for good", slack.SlackErrorResponse{Err: "invalid_blocks"}, 0, false, true},
		{"refused for now", slack.SlackErrorResponse{Err: "not_in_channel"}, 0, false, false},
		{"permanent", permanent("bad"), 0, false, true},
		{"timeout", deadlineErr{}, 0, true, false},
	} {
		ra, u, f := classify(tc.err)
		if ra != tc.retryAfter || u != tc.uncertain || f != tc.fatal {
			t.Errorf("%s: classify = %s %v %v", tc.name, ra, u, f)
		}
	}
}

type deadlineErr struct{}

func (deadlineErr) Error() string { return "context deadline exceeded" }
