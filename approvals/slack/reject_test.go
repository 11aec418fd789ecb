package slack_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker"
)

// TestRefusedClicks: each kind of click that must not count is refused,
// audited, changes nothing, and leaves the shared message as it was.
func TestRefusedClicks(t *testing.T) {
	type outcome struct {
		status int
		// action and code of the audit record expected.
		action, code string
		// private reply expected for the clicker (Slack user), if any.
		told, toldText string
	}
	cases := []struct {
		name  string
		opts  []func(*envOptions)
		click func(e *env, m slacktest.Message) slacktest.Response
		want  outcome
	}{
		{
			name: "forged signature",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				return deliver(e, clickPayload(e, "U0BOB", m, "custos_approve"), slacktest.WithSecret("not-the-signing-secret"))
			},
			want: outcome{status: http.StatusUnauthorized, action: "slack.reject", code: "bad_signature"},
		},
		{
			name: "signature of another body",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				s := e.emu.Sign(clickPayload(e, "U0SAM", m, "custos_approve"))
				s.Body = e.emu.Sign(clickPayload(e, "U0BOB", m, "custos_approve")).Body
				return send(e, s)
			},
			want: outcome{status: http.StatusUnauthorized, action: "slack.reject", code: "bad_signature"},
		},
		{
			name: "no signature",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				s := e.emu.Sign(clickPayload(e, "U0BOB", m, "custos_approve"))
				s.Signature = ""
				return send(e, s)
			},
			want: outcome{status: http.StatusUnauthorized, action: "slack.reject", code: "missing_signature"},
		},
		{
			name: "stale timestamp, correctly signed",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				return deliver(e, clickPayload(e, "U0BOB", m, "custos_approve"), slacktest.At(time.Now().Add(-5*time.Minute-10*time.Second)))
			},
			want: outcome{status: http.StatusUnauthorized, action: "slack.reject", code: "stale_timestamp"},
		},
		{
			name: "timestamp in the future, correctly signed",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				return deliver(e, clickPayload(e, "U0BOB", m, "custos_approve"), slacktest.At(time.Now().Add(5*time.Minute+10*time.Second)))
			},
			want: outcome{status: http.StatusUnauthorized, action: "slack.reject", code: "stale_timestamp"},
		},
		{
			name: "requester approves own request",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0ALICE", m, "custos_approve")
				return r
			},
			want: outcome{status: http.StatusOK, action: "request.approve", code: "self_approval", told: "U0ALICE", toldText: "own request"},
		},
		{
			name: "requester denies own request",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0ALICE", m, "custos_deny")
				return r
			},
			want: outcome{status: http.StatusOK, action: "slack.reject", code: "self_approval", told: "U0ALICE", toldText: "own request"},
		},
		{
			name: "unmapped Slack user",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0EVE", m, "custos_approve")
				return r
			},
			want: outcome{status: http.StatusOK, action: "slack.reject", code: "unmapped_user", told: "U0EVE", toldText: "not linked"},
		},
		{
			name: "user without slack_id while match_email is off",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0DAVE", m, "custos_approve")
				return r
			},
			want: outcome{status: http.StatusOK, action: "slack.reject", code: "unmapped_user", told: "U0DAVE", toldText: "not linked"},
		},
		{
			name: "unconfirmed email with match_email",
			opts: []func(*envOptions){withMatchEmail},
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0FRED", m, "custos_approve")
				return r
			},
			want: outcome{status: http.StatusOK, action: "slack.reject", code: "unmapped_user", told: "U0FRED", toldText: "not linked"},
		},
		{
			name: "email of a user linked to another Slack account",
			opts: []func(*envOptions){withMatchEmail},
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0BOB2", m, "custos_approve")
				return r
			},
			want: outcome{status: http.StatusOK, action: "slack.reject", code: "ambiguous_user", told: "U0BOB2", toldText: "exactly one"},
		},
		{
			name: "non-approver approves",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0SAM", m, "custos_approve")
				return r
			},
			want: outcome{status: http.StatusOK, action: "request.approve", code: "not_approver", told: "U0SAM", toldText: "not an approver"},
		},
		{
			name: "non-approver denies",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				r, _ := e.click("U0SAM", m, "custos_deny")
				return r
			},
			want: outcome{status: http.StatusOK, action: "slack.reject", code: "not_approver", told: "U0SAM", toldText: "not an approver"},
		},
		{
			name: "unknown action",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				return deliver(e, e.emu.BlockActions(slacktest.Action{User: "U0BOB", Channel: m.Channel, MessageTS: m.TS, ActionID: "custos_grant_everything", Value: requestOf(m)}))
			},
			want: outcome{status: http.StatusOK, action: "slack.reject", code: "unknown_action"},
		},
		{
			name: "malformed payload",
			click: func(e *env, m slacktest.Message) slacktest.Response {
				return deliver(e, []byte(`{"type":"block_actions","user":{"id":"<script>"}}`))
			},
			want: outcome{status: http.StatusBadRequest, action: "slack.reject", code: "malformed"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts...)
			req := e.create("alice", "demo-pg", "readonly", time.Hour, "routine check", "")
			m := e.waitMessage(approvals, req.ID)
			before := e.current(m)

			resp := tc.click(e, m)
			if resp.Status != tc.want.status {
				t.Fatalf("answered %d %s, want %d", resp.Status, resp.Body, tc.want.status)
			}
			recs := e.auditRecords(tc.want.action)
			if len(recs) != 1 || recs[0].Outcome != broker.OutcomeDenied || auditCode(recs[0]) != tc.want.code {
				t.Fatalf("audit %s = %+v, want one denied record with code %s", tc.want.action, recs, tc.want.code)
			}
			if tc.want.told != "" {
				eventually(t, "private reply", func() bool { return len(e.emu.Ephemerals(tc.want.told)) == 1 })
				eph := e.emu.Ephemerals(tc.want.told)[0]
				if eph.Channel != approvals || !strings.Contains(eph.Text, tc.want.toldText) {
					t.Errorf("private reply = %+v, want %q in %s", eph, tc.want.toldText, approvals)
				}
			}
			e.drain()

			r := e.request(req.ID)
			if r.State != broker.RequestPending || len(r.Approvals) != 0 || len(r.Denials) != 0 || r.GrantID != "" {
				t.Fatalf("request changed: %+v", r)
			}
			if gs, _ := e.acc.ListGrants(e.ctx, broker.GrantFilter{RequestID: req.ID}); len(gs) != 0 {
				t.Fatalf("grants = %+v", gs)
			}
			if n := len(e.auditRecords("request.approve")) + len(e.auditRecords("request.deny")); tc.want.action == "slack.reject" && n != 0 {
				t.Errorf("the refused click reached the access service (%d records)", n)
			}
			after := e.current(m)
			if after.Edits != before.Edits || after.Content() != before.Content() ||
				!slices.Equal(actionIDs(after), []string{"custos_approve", "custos_deny", "custos_open"}) {
				t.Errorf("shared message changed:\nbefore %s\nafter %s", before.Content(), after.Content())
			}
			if len(e.emu.Calls("chat.update")) != 0 || len(e.emu.Views()) != 0 {
				t.Error("chat.update or views.open was called for a refused click")
			}
			for _, u := range []string{"U0BOB", "U0ALICE", "U0SAM", "U0EVE"} {
				if u != tc.want.told && len(e.emu.Ephemerals(u)) != 0 {
					t.Errorf("%s got a private reply", u)
				}
			}
		})
	}
}

// TestReplayedClickChangesNothing: the exact request Slack sent, delivered
// again within the timestamp window, is audited as a replay and not acted
// on, even where acting on it again would be refused anyway.
func TestReplayedClickChangesNothing(t *testing.T) {
	e := newEnv(t)
	req := e.create("alice", "demo-pg", "readwrite", time.Hour, "migration", "")
	m := e.waitMessage(approvals, req.ID)
	resp, signed := e.click("U0BOB", m, "custos_approve")
	if resp.Status != http.StatusOK {
		t.Fatal(resp.Status)
	}
	eventually(t, "1 of 2 shown", func() bool { return strings.Contains(e.current(m).Content(), "1 of 2") })
	e.drain()
	shown := e.current(m)

	for range 2 {
		if resp := send(e, signed); resp.Status != http.StatusOK {
			t.Fatalf("replay answered %d", resp.Status)
		}
	}
	replays := e.auditRecords("slack.replay")
	if len(replays) != 2 || replays[0].Actor != "slack:U0BOB" || replays[0].Target != req.ID {
		t.Fatalf("replay audit = %+v", replays)
	}
	if n := len(e.auditRecords("request.approve")); n != 1 {
		t.Fatalf("%d request.approve records; the replay reached the access service", n)
	}
	e.drain()
	r := e.request(req.ID)
	if r.State != broker.RequestPending || len(r.Approvals) != 1 {
		t.Fatalf("request after replay: %+v", r)
	}
	if cur := e.current(m); cur.Edits != shown.Edits || cur.Content() != shown.Content() {
		t.Error("the replay changed the message")
	}
	if n := len(e.emu.Ephemerals("U0BOB")); n != 0 {
		t.Errorf("replay answered with %d private replies", n)
	}

	// A deny submission replayed after it counted is a replay too.
	e.click("U0CAROL", e.current(m), "custos_deny")
	v := e.emu.Views()[0]
	p, _ := e.emu.Submit("U0CAROL", v.ID, map[string]map[string]string{"reason": {"reason": "not now"}})
	sub := e.emu.Sign(p)
	send(e, sub)
	if e.request(req.ID).State != broker.RequestDenied {
		t.Fatal("deny did not count")
	}
	send(e, sub)
	if n := len(e.auditRecords("slack.replay")); n != 3 {
		t.Errorf("%d replay records, want 3", n)
	}
	if n := len(e.auditRecords("request.deny")); n != 1 {
		t.Errorf("%d request.deny records, want 1", n)
	}
}

func TestMatchByEmail(t *testing.T) {
	e := newEnv(t, withMatchEmail)
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "check", "")
	m := e.waitMessage(approvals, req.ID)
	e.click("U0DAVE", m, "custos_approve")
	r := e.request(req.ID)
	if r.State != broker.RequestApproved || r.Approvals[0].By != "dave" {
		t.Fatalf("dave's click by email: %+v", r)
	}
	calls := e.emu.Calls("users.info")
	if len(calls) != 1 || calls[0].Params["user"] != "U0DAVE" {
		t.Errorf("users.info calls = %+v", calls)
	}
}

func clickPayload(e *env, user string, m slacktest.Message, action string) []byte {
	e.t.Helper()
	p, err := e.emu.Click(user, m.Channel, m.TS, action)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func deliver(e *env, payload []byte, opts ...slacktest.SignOption) slacktest.Response {
	return send(e, e.emu.Sign(payload, opts...))
}

func send(e *env, s slacktest.Signed) slacktest.Response {
	e.t.Helper()
	resp, err := e.emu.Send(e.ctx, e.endpoint, s)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// requestOf returns the request ID a message's approve button carries.
func requestOf(m slacktest.Message) string {
	for _, b := range m.Buttons() {
		if b.ActionID == "custos_approve" {
			return b.Value
		}
	}
	return ""
}
