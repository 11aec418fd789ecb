package slack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
)

// throttleClock is the audit throttle's settable time; Slack's signature
// check keeps the real clock.
type throttleClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *throttleClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *throttleClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// throttledEnv is Slack approvals wired as serve wires them, with the
// audit throttle, behind the web server on loopback. Background work does
// not run: only the interaction endpoint is exercised.
type throttledEnv struct {
	emu      *slacktest.Server
	st       broker.Store
	acc      *access.Service
	th       *audit.Throttle
	clk      *throttleClock
	endpoint string
}

func newThrottledEnv(t *testing.T) *throttledEnv {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	emu := slacktest.New(t, slacktest.Options{BotToken: botToken, SigningSecret: signingSecret, Scopes: manifestScopes(t),
		Users: slackUsers, Channels: []slacktest.Channel{{ID: approvals, Name: "approvals"}}})
	st, err := openStore(t)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := identity.NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	auditLog := audit.NewLog(st)
	clk := &throttleClock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}
	th := audit.NewThrottle(auditLog, audit.ThrottleOptions{Now: clk.Now, Log: log})
	acc := access.New(access.Options{Config: cfg, Directory: dir, Store: st, Audit: auditLog, Log: log})
	t.Setenv("CUSTOS_TEST_SLACK_BOT", botToken)
	sc := config.Slack{Enabled: true, BotToken: "env:CUSTOS_TEST_SLACK_BOT", Channel: approvals, APIURL: emu.APIURL(),
		SigningSecret: config.Secret(signingSecret)}
	sl, err := slack.New(slack.Options{Config: sc, PublicURL: cfg.PublicURL, Targets: cfg.Targets, Access: acc,
		Directory: dir, Store: st, Audit: auditLog, Rejections: th, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	acc.AddNotifier(sl)
	mux := http.NewServeMux()
	if h := sl.Handler(); h != nil {
		mux.Handle(slack.InteractionPath, h)
	}
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &throttledEnv{emu: emu, st: st, acc: acc, th: th, clk: clk, endpoint: hs.URL + "/slack/interactions"}
}

// sendFrom delivers s from a loopback address of its own (any 127.x.y.z
// works on Linux), as another client would.
func (e *throttledEnv) sendFrom(t *testing.T, ip string, s slacktest.Signed) int {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.endpoint, bytes.NewReader(s.Body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", s.Timestamp)
	req.Header.Set("X-Slack-Signature", s.Signature)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (e *throttledEnv) rejects(t *testing.T) (single []broker.AuditRecord, sums []map[string]any) {
	t.Helper()
	err := e.st.View(t.Context(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: "slack.reject"})
		for _, r := range recs {
			var d map[string]any
			_ = json.Unmarshal(r.Details, &d)
			if d["summary"] == true {
				sums = append(sums, d)
			} else {
				single = append(single, r)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return single, sums
}

// TestForgedFloodIsSummarized: a hundred forged, stale or unsigned
// requests from one address are all refused with 401 and leave five
// slack.reject records as before plus, once the window closes, one
// summary of the other 95 with their reasons. Another address is counted
// apart, and refusals of identified clickers are never summarized.
func TestForgedFloodIsSummarized(t *testing.T) {
	e := newThrottledEnv(t)
	req, err := e.acc.Create(t.Context(), "alice", access.NewRequest{Target: "demo-pg", Role: "readonly", Duration: time.Hour, Reason: "check"})
	if err != nil {
		t.Fatal(err)
	}
	click := func(user, action string) []byte {
		return e.emu.BlockActions(slacktest.Action{User: user, Channel: approvals, MessageTS: "1.000001", ActionID: action, Value: req.ID})
	}
	for i := range 100 {
		var s slacktest.Signed
		switch i % 3 {
		case 0:
			s = e.emu.Sign(click("U0BOB", "custos_approve"), slacktest.WithSecret("not-the-signing-secret"))
		case 1:
			s = e.emu.Sign(click("U0BOB", "custos_approve"), slacktest.At(time.Now().Add(-time.Hour)))
		case 2:
			s = e.emu.Sign(click("U0BOB", "custos_approve"))
			s.Signature = ""
		}
		if code := e.sendFrom(t, "127.0.0.1", s); code != http.StatusUnauthorized {
			t.Fatalf("forged request %d answered %d", i, code)
		}
	}
	if code := e.sendFrom(t, "127.0.0.2", e.emu.Sign(click("U0BOB", "custos_approve"), slacktest.WithSecret("x"))); code != http.StatusUnauthorized {
		t.Fatalf("forged request from another address answered %d", code)
	}
	// A non-approver's Deny clicks, correctly signed, from the same
	// address: each is its own record whatever the flood before.
	for range 7 {
		if code := e.sendFrom(t, "127.0.0.1", e.emu.Sign(click("U0SAM", "custos_deny"))); code != http.StatusOK {
			t.Fatalf("signed click answered %d", code)
		}
	}
	single, sums := e.rejects(t)
	var forged, other, notApprover int
	for _, r := range single {
		switch {
		case auditCode(r) == "not_approver" && r.Actor == "sam":
			notApprover++
		case r.Actor == "slack:unverified" && detail(r, "remote_addr") != nil:
			if host, _, _ := net.SplitHostPort(detail(r, "remote_addr").(string)); host == "127.0.0.2" {
				other++
			} else {
				forged++
			}
		}
	}
	if forged != 5 || other != 1 || notApprover != 7 || len(single) != 13 || len(sums) != 0 {
		t.Fatalf("records: %d forged, %d from the other address, %d not_approver (%d in all), %d summaries; want 5, 1, 7 (13), 0",
			forged, other, notApprover, len(single), len(sums))
	}

	e.clk.Add(time.Minute)
	if err := e.th.FlushClosed(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, sums = e.rejects(t)
	if len(sums) != 1 || sums[0]["suppressed"] != 95.0 || sums[0]["recorded"] != 5.0 || sums[0]["source"] != "127.0.0.1" {
		t.Fatalf("summaries %v, want one of 95 from 127.0.0.1", sums)
	}
	reasons, _ := sums[0]["reasons"].(map[string]any)
	if len(reasons) != 3 || reasons["invalid Slack signature"] == nil || reasons["request timestamp outside the five-minute window"] == nil ||
		reasons["missing Slack signature headers"] == nil {
		t.Errorf("summary reasons %v", reasons)
	}
	if n := len(e.emu.Calls("chat.update")); n != 0 {
		t.Errorf("a refused click changed a message (%d chat.update calls)", n)
	}
	if r, _ := e.acc.GetRequest(t.Context(), req.ID); r.State != broker.RequestPending || len(r.Approvals) != 0 {
		t.Errorf("request changed: %+v", r)
	}
	rep, err := audit.Verify(t.Context(), e.st)
	if err != nil || !rep.OK {
		t.Fatalf("chain %+v %v", rep, err)
	}
}
