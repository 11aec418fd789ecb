package slack_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

func postsTo(calls []slacktest.Call, channel string) []slacktest.Call {
	var out []slacktest.Call
	for _, c := range calls {
		if c.Params["channel"] == channel {
			out = append(out, c)
		}
	}
	return out
}

// TestRateLimitAndServerErrorsDeliverOnce: Slack answers 429 with
// Retry-After, then 500, then processes a request but answers 500: every
// message still arrives, once, and the Retry-After is honoured.
func TestRateLimitAndServerErrorsDeliverOnce(t *testing.T) {
	e := newEnv(t, withSlack(func(s *slacktest.Server) {
		s.Fail("chat.postMessage", slacktest.Failure{Status: 429, RetryAfter: 1}, slacktest.Failure{Status: 500})
	}))
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "rate limits", "")
	created := time.Now()
	m := e.waitMessage(approvals, req.ID)
	// The emulator shows the message a moment before it logs the call.
	var posts []slacktest.Call
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		posts = postsTo(e.emu.Calls("chat.postMessage"), approvals)
		if len(posts) >= 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(posts) == 3 && !created.Before(posts[2].At) {
		t.Errorf("creating the request waited for Slack: it returned at %s, after the successful post at %s", created, posts[2].At)
	}
	if len(posts) != 3 || posts[0].Status != 429 || posts[1].Status != 500 || posts[2].Status != 200 {
		t.Fatalf("posts = %+v", posts)
	}
	if gap := posts[1].At.Sub(posts[0].At); gap < time.Second {
		t.Errorf("retried %s after a 429 with Retry-After: 1", gap)
	}
	// After a 500 the post may have happened: the retry looked first.
	if h := e.emu.Calls("conversations.history"); len(h) != 1 || h[0].Params["channel"] != approvals || h[0].At.Before(posts[1].At) || h[0].At.After(posts[2].At) {
		t.Errorf("history calls = %+v", h)
	}

	// The update is rate limited and fails too; the requester's DM is
	// processed by Slack but the answer is lost.
	e.emu.Fail("chat.update", slacktest.Failure{Status: 429, RetryAfter: 1}, slacktest.Failure{Status: 503})
	e.emu.Fail("chat.postMessage", slacktest.Failure{Status: 500, AfterEffect: true})
	e.click("U0BOB", m, "custos_approve")
	eventually(t, "message updated", func() bool { return len(e.current(m).Buttons()) == 0 })
	eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) > 0 })
	e.drain()
	if n := len(e.messagesFor(approvals, req.ID)); n != 1 {
		t.Errorf("%d messages for the request, want 1", n)
	}
	if cur := e.current(m); cur.Edits != 1 || !strings.Contains(cur.Content(), "Approved by *bob*") {
		t.Errorf("message edited %d times, want 1:\n%s", cur.Edits, cur.Content())
	}
	updates := e.emu.Calls("chat.update")
	if len(updates) != 3 || updates[2].Status != 200 || updates[1].At.Sub(updates[0].At) < time.Second {
		t.Errorf("updates = %+v", updates)
	}
	if n := len(dmMessages(e, "U0ALICE")); n != 1 {
		t.Errorf("requester got %d DMs, want 1", n)
	}
	if n := len(postsTo(e.emu.Calls("chat.postMessage"), slacktest.DMChannel("U0ALICE"))); n != 1 {
		t.Errorf("the DM was posted %d times; the retry should have found it", n)
	}
}

// TestPostProcessedButUnanswered: Slack posts the message and answers 500;
// the retry adopts that message instead of posting a second one, and
// brings it up to date with what happened in between.
func TestPostProcessedButUnanswered(t *testing.T) {
	e := newEnv(t, withSlack(func(s *slacktest.Server) {
		s.Fail("chat.postMessage", slacktest.Failure{Status: 500, AfterEffect: true})
		// Slow the search for it down, so a decision comes first.
		s.Fail("conversations.history", slacktest.Failure{Status: 503}, slacktest.Failure{Status: 503})
	}))
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "lost answer", "")
	eventually(t, "the post reached Slack", func() bool { return len(e.messagesFor(approvals, req.ID)) == 1 })
	m := e.messagesFor(approvals, req.ID)[0]
	e.click("U0BOB", m, "custos_approve") // while the broker does not know the message yet
	eventually(t, "the adopted message is updated", func() bool { return len(e.current(m).Buttons()) == 0 })
	e.drain()
	if n := len(e.messagesFor(approvals, req.ID)); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	if n := len(postsTo(e.emu.Calls("chat.postMessage"), approvals)); n != 1 {
		t.Errorf("posted %d times, want 1", n)
	}
	if c := e.current(m).Content(); !strings.Contains(c, "Approved by *bob*") {
		t.Errorf("message:\n%s", c)
	}
}

// blockingTransport hangs every Web API call while down, as an
// unreachable Slack does.
type blockingTransport struct {
	down chan struct{}
}

func (b *blockingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-b.down:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestSlackDownRequestsStillWork: with Slack unreachable the access
// service is not slowed down; once Slack answers, the channel catches up
// with the final state, one message and one DM.
func TestSlackDownRequestsStillWork(t *testing.T) {
	bt := &blockingTransport{down: make(chan struct{})}
	e := newEnv(t, func(o *envOptions) { o.httpClient = &http.Client{Transport: bt} })
	start := time.Now()
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "slack is down", "")
	if _, _, err := e.acc.Decide(e.ctx, "carol", req.ID, access.Decision{Approve: true, Via: "cli"}); err != nil {
		t.Fatal(err)
	}
	// The transport never answers: a notifier that waited on it would
	// hang here for good, so any generous bound shows it does not.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("request and approval took %s with Slack down", d)
	}
	if r := e.request(req.ID); r.State != broker.RequestApproved {
		t.Fatalf("request %s", r.State)
	}
	if n := len(e.emu.Calls("")); n != 0 {
		t.Fatalf("%d calls reached Slack while it was down", n)
	}
	close(bt.down)
	m := e.waitMessage(approvals, req.ID)
	eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })
	e.drain()
	cur := e.current(m)
	if len(cur.Buttons()) != 0 || !strings.Contains(cur.Content(), "Approved by *carol*") {
		t.Errorf("message after Slack came back:\n%s", cur.Content())
	}
	if n := len(e.messagesFor(approvals, req.ID)); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	if n := len(dmMessages(e, "U0ALICE")); n != 1 {
		t.Errorf("%d requester DMs, want 1", n)
	}
}

// dyingStore stops answering once killed, like a broker that died.
type dyingStore struct {
	broker.Store
	dead atomic.Bool
}

var errDead = errors.New("broker process died")

func (d *dyingStore) Update(ctx context.Context, fn func(broker.Tx) error) error {
	if d.dead.Load() {
		return errDead
	}
	return d.Store.Update(ctx, fn)
}

func (d *dyingStore) View(ctx context.Context, fn func(broker.Tx) error) error {
	if d.dead.Load() {
		return errDead
	}
	return d.Store.View(ctx, fn)
}

// dieAfterPost lets one chat.postMessage reach Slack, then kills the store
// before the broker can record the message.
type dieAfterPost struct{ st *dyingStore }

func (d dieAfterPost) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if strings.HasSuffix(r.URL.Path, "/chat.postMessage") {
		d.st.dead.Store(true)
	}
	return resp, err
}

// restart starts a second broker on the same store and Slack, as after a
// restart: a fresh access service and Slack channel.
func restart(t *testing.T, e *env, st broker.Store) (*access.Service, *slack.Slack) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	auditLog := audit.NewLog(st)
	acc := access.New(access.Options{Config: e.cfg, Directory: e.dir, Store: st, Audit: auditLog, Log: log})
	t.Setenv("CUSTOS_TEST_SLACK_SECRET", signingSecret)
	sl, err := slack.New(slack.Options{Config: config.Slack{Enabled: true, BotToken: config.Secret(botToken),
		SigningSecret: "env:CUSTOS_TEST_SLACK_SECRET", Channel: approvals, SecurityChannel: securityChan, APIURL: e.emu.APIURL()},
		PublicURL: publicURL, Targets: e.cfg.Targets, Access: acc, Directory: e.dir, Store: st, Audit: auditLog, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	slack.FastTimings(sl)
	acc.AddNotifier(sl)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = sl.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return acc, sl
}

func TestRestart(t *testing.T) {
	t.Run("queued while stopped", func(t *testing.T) {
		e := newEnv(t, func(o *envOptions) { o.noRun = true })
		req := e.create("alice", "demo-pg", "readonly", time.Hour, "queued", "")
		if _, _, err := e.acc.Decide(e.ctx, "bob", req.ID, access.Decision{Approve: true, Via: "cli"}); err != nil {
			t.Fatal(err)
		}
		if n := slack.OutboxLen(e.sl); n == 0 {
			t.Fatal("nothing queued")
		}
		e.stop()
		restart(t, e, e.st)
		m := e.waitMessage(approvals, req.ID)
		eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })
		if c := m.Content(); len(m.Buttons()) != 0 || !strings.Contains(c, "Approved by *bob*") {
			t.Errorf("message:\n%s", c)
		}
	})
	t.Run("died between post and commit", func(t *testing.T) {
		st := &dyingStore{}
		e := newEnv(t, func(o *envOptions) {
			s, err := openStore(t)
			if err != nil {
				t.Fatal(err)
			}
			st.Store = s
			o.store = st
			o.httpClient = &http.Client{Transport: dieAfterPost{st}}
		})
		req := e.create("alice", "demo-pg", "readonly", time.Hour, "crash window", "")
		eventually(t, "the post reached Slack", func() bool { return len(e.messagesFor(approvals, req.ID)) == 1 })
		eventually(t, "the broker died", st.dead.Load)
		e.stop()

		acc, _ := restart(t, e, st.Store)
		eventually(t, "the restarted broker looked for the earlier post", func() bool {
			return len(e.emu.Calls("conversations.history")) > 0
		})
		m := e.waitMessage(approvals, req.ID)
		if _, _, err := acc.Decide(context.Background(), "bob", req.ID, access.Decision{Approve: true, Via: "cli"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the adopted message is updated", func() bool { return len(e.current(m).Buttons()) == 0 })
		if n := len(e.messagesFor(approvals, req.ID)); n != 1 {
			t.Errorf("%d messages after the restart, want 1", n)
		}
		if n := len(postsTo(e.emu.Calls("chat.postMessage"), approvals)); n != 1 {
			t.Errorf("posted %d times, want 1", n)
		}
	})
}

// TestGiveUpIsAudited: what Slack refuses for good, or keeps failing past
// the retry horizon, is given up with an audit record, not retried forever.
func TestGiveUpIsAudited(t *testing.T) {
	e := newEnv(t, withSlack(func(s *slacktest.Server) {
		s.Fail("chat.postMessage", slacktest.Failure{Error: "invalid_blocks"})
	}))
	req := e.create("alice", "demo-pg", "readonly", time.Hour, "refused", "")
	eventually(t, "give-up audited", func() bool { return len(e.auditRecords("slack.delivery")) == 1 })
	rec := e.auditRecords("slack.delivery")[0]
	if rec.Outcome != broker.OutcomeError || !strings.Contains(rec.Reason, "invalid_blocks") || rec.Target != req.ID {
		t.Errorf("audit = %+v", rec)
	}
	time.Sleep(300 * time.Millisecond) // several sweeps
	e.drain()
	if n := len(postsTo(e.emu.Calls("chat.postMessage"), approvals)); n != 1 {
		t.Errorf("a refused post was tried %d times", n)
	}

	slack.SetMaxAge(e.sl, 300*time.Millisecond)
	var fs []slacktest.Failure
	for range 50 {
		fs = append(fs, slacktest.Failure{Status: 503})
	}
	e.emu.Fail("conversations.open", fs...)
	if _, _, err := e.acc.Decide(e.ctx, "bob", req.ID, access.Decision{Approve: true, Via: "cli"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "DM given up", func() bool { return len(e.auditRecords("slack.delivery")) == 2 })
	if rec := e.auditRecords("slack.delivery")[1]; !strings.Contains(rec.Reason, "503") || detail(rec, "kind") != "notify" {
		t.Errorf("audit = %+v", rec)
	}
}

// TestManifestScopesAreExactlyThoseUsed: the emulator grants the bot only
// the manifest's scopes (so a call needing another one fails everywhere in
// these tests); this scenario exercises every feature and must need each
// of them.
func TestManifestScopesAreExactlyThoseUsed(t *testing.T) {
	e := newEnv(t, withMatchEmail, withSlack(func(s *slacktest.Server) {
		// Uncertain failures in a public channel, a private one and a DM
		// make the retries read history in each.
		s.Fail("chat.postMessage", slacktest.Failure{Status: 500, AfterEffect: true}, slacktest.Failure{Status: 500, AfterEffect: true})
	}))
	pub := e.create("alice", "demo-pg", "readonly", time.Hour, "public", "")
	e.waitMessage(approvals, pub.ID)
	priv := e.create("alice", "secret-pg", "readonly", time.Hour, "private", "")
	m := e.waitMessage(privateChan, priv.ID)
	e.drain()
	e.emu.Fail("chat.postMessage", slacktest.Failure{Status: 500, AfterEffect: true})
	e.click("U0DAVE", m, "custos_approve") // by email: users.info
	eventually(t, "requester DM", func() bool { return len(dmMessages(e, "U0ALICE")) == 1 })
	e.drain()

	want := manifestScopes(t)
	slices.Sort(want)
	if got := e.emu.ScopesUsed(); !slices.Equal(got, want) {
		t.Errorf("scopes used %v, manifest grants %v", got, want)
	}
	for _, c := range e.emu.Calls("") {
		if c.Error == "missing_scope" {
			t.Errorf("%s needed a scope the manifest lacks", c.Method)
		}
	}
}
