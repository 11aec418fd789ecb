package slack_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

const (
	signingSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	botToken      = "xoxb-1-custos-test"
	appToken      = "xapp-1-custos-test"
	approvals     = "C0APPROVALS"
	prodChannel   = "C0PROD"
	securityChan  = "C0SECURITY"
	privateChan   = "G0PRIVATE"
	publicURL     = "https://custos.example.test"
)

const testConfig = `
public_url: https://custos.example.test
users:
  - {name: alice, email: alice@example.test, slack_id: U0ALICE}
  - {name: bob, email: bob@example.test, slack_id: U0BOB}
  - {name: carol, email: carol@example.test, slack_id: U0CAROL}
  - {name: sam, email: sam@example.test, slack_id: U0SAM}
  - {name: dave, email: dave@example.test}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob, carol, dave]}
  - {name: security, members: [sam]}
security_admins: [security]
targets:
  - name: demo-pg
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 8h, require_reason: true}
      - name: readwrite
        policy: {requesters: [dbas], approvers: [approvers], approvals: 2, max_duration: 4h, dm_approvers: true}
      - name: brief
        policy: {requesters: [dbas], approvers: [approvers], approvals: 2, dm_approvers: true, request_ttl: 4s, remind_before: 2s}
      - name: change
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, signature: required}
  - name: prod-db
    kind: postgres
    address: 127.0.0.1:5433
    approve_in_slack: false
    slack_channel: C0PROD
    roles:
      - name: admin
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1}
  - name: secret-pg
    kind: postgres
    address: 127.0.0.1:5434
    slack_channel: G0PRIVATE
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1}
`

// slackUsers are the workspace members the emulator knows. Eve has no
// Custos identity; bob2 has bob's email but another Slack account; fred's
// email is unconfirmed.
var slackUsers = []slacktest.User{
	{ID: "U0ALICE", Name: "alice", Email: "alice@example.test"},
	{ID: "U0BOB", Name: "bob", Email: "bob@example.test"},
	{ID: "U0CAROL", Name: "carol", Email: "carol@example.test"},
	{ID: "U0SAM", Name: "sam", Email: "sam@example.test"},
	{ID: "U0DAVE", Name: "dave", Email: "dave@example.test"},
	{ID: "U0EVE", Name: "eve", Email: "eve@elsewhere.test"},
	{ID: "U0BOB2", Name: "bob-alt", Email: "bob@example.test"},
	{ID: "U0FRED", Name: "fred", Email: "dave@example.test", Unconfirmed: true},
}

type envOptions struct {
	socket     bool
	matchEmail bool
	scheduler  bool
	httpClient *http.Client
	store      broker.Store
	noRun      bool
	before     func(*slacktest.Server)
	// noPublicURL runs Slack without the broker's public URL: no links.
	noPublicURL bool
	// holds lets Slack decide held statements.
	holds slack.Holds
}

// env is one broker with Slack approvals against an emulated Slack: the
// SQLite store, the access service, the web server on loopback and the
// Slack channel running.
type env struct {
	t        *testing.T
	ctx      context.Context
	cfg      *config.Config
	dir      *identity.Directory
	st       broker.Store
	acc      *access.Service
	sl       *slack.Slack
	emu      *slacktest.Server
	endpoint string
	stop     func()
}

func manifestScopes(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "slack", "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		OAuth struct {
			Scopes struct {
				Bot []string `yaml:"bot"`
			} `yaml:"scopes"`
		} `yaml:"oauth_config"`
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.OAuth.Scopes.Bot
}

func newEnv(t *testing.T, opts ...func(*envOptions)) *env {
	t.Helper()
	var o envOptions
	for _, f := range opts {
		f(&o)
	}
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	emu := slacktest.New(t, slacktest.Options{
		BotToken: botToken, AppToken: appToken, SigningSecret: signingSecret, Scopes: manifestScopes(t),
		Users: slackUsers,
		Channels: []slacktest.Channel{{ID: approvals, Name: "approvals"}, {ID: prodChannel, Name: "prod-approvals"},
			{ID: securityChan, Name: "security"}, {ID: privateChan, Name: "secret-approvals", Private: true}},
	})
	if o.before != nil {
		o.before(emu)
	}
	st := o.store
	if st == nil {
		if st, err = openStore(t); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	dir, err := identity.NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	auditLog := audit.NewLog(st)
	acc := access.New(access.Options{Config: cfg, Directory: dir, Store: st, Audit: auditLog, Log: log})
	sc := config.Slack{Enabled: true, BotToken: "env:CUSTOS_TEST_SLACK_BOT", Channel: approvals,
		SecurityChannel: securityChan, APIURL: emu.APIURL(), MatchEmail: o.matchEmail,
		TicketURL: "https://tickets.example.test/browse/{ticket}"}
	t.Setenv("CUSTOS_TEST_SLACK_BOT", botToken)
	if o.socket {
		t.Setenv("CUSTOS_TEST_SLACK_APP", appToken)
		sc.AppToken = "env:CUSTOS_TEST_SLACK_APP"
	} else {
		sc.SigningSecret = config.Secret(signingSecret)
	}
	publicURL := cfg.PublicURL
	if o.noPublicURL {
		publicURL = ""
	}
	sl, err := slack.New(slack.Options{Config: sc, PublicURL: publicURL, Targets: cfg.Targets, Access: acc,
		Directory: dir, Store: st, Audit: auditLog, Log: log, HTTPClient: o.httpClient, Holds: o.holds, HoldAccess: acc})
	if err != nil {
		t.Fatal(err)
	}
	slack.FastTimings(sl)
	acc.AddNotifier(sl)

	mux := http.NewServeMux()
	if h := sl.Handler(); h != nil {
		mux.Handle(slack.InteractionPath, h)
	}
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, ctx: ctx, cfg: cfg, dir: dir, st: st, acc: acc, sl: sl, emu: emu, endpoint: hs.URL + "/slack/interactions"}
	var wg sync.WaitGroup
	if !o.noRun {
		wg.Go(func() { _ = sl.Run(ctx) })
	}
	if o.scheduler {
		wg.Go(func() { acc.RunScheduler(ctx) })
	}
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(e.stop)
	return e
}

func openStore(t *testing.T) (broker.Store, error) {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

func withSocketMode(o *envOptions)   { o.socket = true }
func withMatchEmail(o *envOptions)   { o.matchEmail = true }
func withScheduler(o *envOptions)    { o.scheduler = true }
func withoutPublicURL(o *envOptions) { o.noPublicURL = true }
func withSlack(f func(*slacktest.Server)) func(*envOptions) {
	return func(o *envOptions) { o.before = f }
}

// eventually waits up to 10 seconds for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) create(user, target, role string, d time.Duration, reason, ticket string) broker.Request {
	e.t.Helper()
	r, err := e.acc.Create(e.ctx, user, access.NewRequest{Target: target, Role: role, Duration: d, Reason: reason, Ticket: ticket})
	if err != nil {
		e.t.Fatalf("create request: %v", err)
	}
	return r
}

func (e *env) request(id string) broker.Request {
	e.t.Helper()
	r, err := e.acc.GetRequest(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// messagesFor returns the top-level messages in channel about a request.
func (e *env) messagesFor(channel, id string) []slacktest.Message {
	var out []slacktest.Message
	for _, m := range e.emu.Messages(channel) {
		if m.ThreadTS == "" && strings.Contains(m.Content(), id) {
			out = append(out, m)
		}
	}
	return out
}

// waitMessage waits for the request's message in channel and returns it.
func (e *env) waitMessage(channel, id string) slacktest.Message {
	e.t.Helper()
	eventually(e.t, "message for "+id+" in "+channel, func() bool { return len(e.messagesFor(channel, id)) > 0 })
	ms := e.messagesFor(channel, id)
	if len(ms) != 1 {
		e.t.Fatalf("%d messages for %s in %s, want 1", len(ms), id, channel)
	}
	return ms[0]
}

// current returns the message as it is now.
func (e *env) current(m slacktest.Message) slacktest.Message {
	e.t.Helper()
	for _, x := range e.emu.Messages(m.Channel) {
		if x.TS == m.TS {
			return x
		}
	}
	e.t.Fatalf("message %s in %s is gone", m.TS, m.Channel)
	return slacktest.Message{}
}

// click has user click a button on a message over HTTP, signed as Slack
// signs.
func (e *env) click(user string, m slacktest.Message, action string) (slacktest.Response, slacktest.Signed) {
	e.t.Helper()
	p, err := e.emu.Click(user, m.Channel, m.TS, action)
	if err != nil {
		e.t.Fatal(err)
	}
	signed := e.emu.Sign(p)
	resp, err := e.emu.Send(e.ctx, e.endpoint, signed)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, signed
}

// drain waits until everything queued so far reached Slack: a security
// notice queued now is delivered after every earlier item.
func (e *env) drain() {
	e.t.Helper()
	marker := "drain " + broker.NewID("mark")
	if err := e.sl.SecurityNotice(e.ctx, marker); err != nil {
		e.t.Fatal(err)
	}
	eventually(e.t, "outbox drained", func() bool {
		for _, m := range e.emu.Messages(securityChan) {
			if m.Text == marker {
				return slack.OutboxLen(e.sl) == 0
			}
		}
		return false
	})
}

// auditRecords returns the audit records whose action starts with prefix.
func (e *env) auditRecords(prefix string) []broker.AuditRecord {
	e.t.Helper()
	var out []broker.AuditRecord
	err := e.st.View(e.ctx, func(tx broker.Tx) error {
		var err error
		out, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: prefix})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// auditCode returns the "code" detail of a record.
func auditCode(r broker.AuditRecord) string {
	var d struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(r.Details, &d)
	return d.Code
}

func detail(r broker.AuditRecord, key string) any {
	var d map[string]any
	_ = json.Unmarshal(r.Details, &d)
	return d[key]
}

func actionIDs(m slacktest.Message) []string {
	var out []string
	for _, b := range m.Buttons() {
		out = append(out, b.ActionID)
	}
	slices.Sort(out)
	return out
}

func dmMessages(e *env, user string) []slacktest.Message {
	return e.emu.Messages(slacktest.DMChannel(user))
}
