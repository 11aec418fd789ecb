package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
)

// Access is what Slack needs from the access lifecycle;
// *access.Service implements it.
type Access interface {
	Decide(ctx context.Context, actor, requestID string, d access.Decision) (broker.Request, *broker.Grant, error)
	GetRequest(ctx context.Context, id string) (broker.Request, error)
	GetGrant(ctx context.Context, id string) (broker.Grant, error)
	ListRequests(ctx context.Context, f broker.RequestFilter) ([]broker.Request, error)
	// CheckDecide applies the access rules to a vote before it is cast
	// (the deny dialog is not opened for a vote that would be refused).
	CheckDecide(user string, r broker.Request) error
}

// Directory maps Slack users to identities and answers group membership;
// *identity.Directory implements it.
type Directory interface {
	Lookup(name string) (identity.Identity, bool)
	BySlackID(id string) (identity.Identity, bool)
	ByEmail(email string) (identity.Identity, bool)
	GroupsOf(user string) []string
	Members(group string) ([]string, bool)
	Enabled(user string) bool
}

// Options configure Slack approvals. Zero fields take the documented
// defaults; Config, Access, Directory, Store and Audit are required.
type Options struct {
	// Config is the slack section of custos.yaml. Its secret references
	// are resolved by New.
	Config config.Slack
	// PublicURL is the broker's base URL; messages link to
	// PublicURL/ui/requests/<id>. Default: no link.
	PublicURL string
	// Targets are the configured targets, for per-target channels,
	// approve_in_slack and the policy of each role.
	Targets   []config.Target
	Access    Access
	Directory Directory
	Store     broker.Store
	Audit     *audit.Log
	// Rejections, when set, audits the interactions refused before anyone
	// is identified (bad or missing signature, stale timestamp, malformed
	// body), which anyone who can reach the endpoint can send: the first
	// few per source address and window are records of their own, the
	// rest one summary record. Default: nil, every refusal is its own
	// record.
	Rejections *audit.Throttle
	// Holds and HoldAccess let approvers decide statements held by the
	// PostgreSQL guardrails with buttons on the hold notice (holds.go).
	// Default: nil (hold notices carry no buttons).
	Holds      Holds
	HoldAccess HoldAccess
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// HTTPClient makes the Web API calls. Default: a client with a
	// 15-second timeout.
	HTTPClient *http.Client
}

// timings are the intervals of the background work; tests shorten them.
type timings struct {
	poll      time.Duration // outbox wake-up when nothing signalled
	sweep     time.Duration // reminders and reconciliation with the store
	retryBase time.Duration // first retry delay; doubles per attempt
	retryMax  time.Duration // cap of the retry delay
	lease     time.Duration // how long a claimed outbox item is reserved
	maxAge    time.Duration // give up on an item this old
	call      time.Duration // timeout of one Web API call
	ephemeral time.Duration // give up on a private reply this old
}

var defaultTimings = timings{
	poll: time.Second, sweep: 15 * time.Second, retryBase: 2 * time.Second, retryMax: 5 * time.Minute,
	lease: time.Minute, maxAge: 24 * time.Hour, call: 15 * time.Second, ephemeral: 2 * time.Minute,
}

// Slack is the Slack approval channel. Build it with New, mount its
// endpoint (Handler) at InteractionPath, add it to the access service with AddNotifier and
// run its background work with Run.
type Slack struct {
	// routing holds what a config reload may change: the channels,
	// match_email, ticket_url and the targets. Read it with settings.
	routing   atomic.Pointer[routing]
	publicURL string
	access    Access
	dir       Directory
	store     broker.Store
	audit     *audit.Log
	log       *slog.Logger
	now       func() time.Time
	api       *slack.Client
	appToken  string
	secret    string
	t         timings

	wake chan struct{}

	// rejections throttles refusals before identification; nil: none.
	rejections *audit.Throttle

	holds      Holds
	holdAccess HoldAccess

	mu          sync.Mutex
	pausedUntil time.Time // set by a 429: no Web API call before then
	teamID      string    // the workspace, from auth.test
}

var (
	_ access.Notifier       = (*Slack)(nil)
	_ access.EndingNotifier = (*Slack)(nil)
)

// New resolves the tokens and returns a Slack approval channel. It makes no
// network call.
func New(o Options) (*Slack, error) {
	if o.Access == nil || o.Directory == nil || o.Store == nil || o.Audit == nil {
		return nil, errors.New("slack: access, directory, store and audit are required")
	}
	bot, err := o.Config.BotToken.Resolve()
	if err != nil || bot == "" {
		return nil, fmt.Errorf("slack: bot_token: %w", orMissing(err))
	}
	s := &Slack{
		publicURL: strings.TrimRight(o.PublicURL, "/"), holds: o.Holds, holdAccess: o.HoldAccess,
		access: o.Access, dir: o.Directory, store: o.Store, audit: o.Audit, log: o.Log, now: o.Now,
		t: defaultTimings, wake: make(chan struct{}, 1), rejections: o.Rejections,
	}
	s.routing.Store(&routing{cfg: o.Config, targets: o.Targets})
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "slack")
	if s.now == nil {
		s.now = time.Now
	}
	if o.Config.SigningSecret.IsSet() {
		if s.secret, err = o.Config.SigningSecret.Resolve(); err != nil || s.secret == "" {
			return nil, fmt.Errorf("slack: signing_secret: %w", orMissing(err))
		}
	}
	if o.Config.AppToken.IsSet() {
		if s.appToken, err = o.Config.AppToken.Resolve(); err != nil || s.appToken == "" {
			return nil, fmt.Errorf("slack: app_token: %w", orMissing(err))
		}
	}
	if s.secret == "" && s.appToken == "" {
		return nil, errors.New("slack: a signing_secret or an app_token is required to receive clicks")
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: s.t.call}
	}
	opts := []slack.Option{slack.OptionHTTPClient(hc)}
	if o.Config.APIURL != "" {
		u := o.Config.APIURL
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		opts = append(opts, slack.OptionAPIURL(u))
	}
	if s.appToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(s.appToken))
	}
	s.api = slack.New(bot, opts...)
	return s, nil
}

func orMissing(err error) error {
	if err != nil {
		return err
	}
	return errors.New("empty")
}

// Handler is the interaction endpoint to mount at POST
// /slack/interactions (InteractionPath), or nil when no signing secret is
// configured: with only an app token, clicks arrive over Socket Mode and
// no endpoint is exposed.
func (s *Slack) Handler() http.Handler {
	if s.secret == "" {
		return nil
	}
	return s.InteractionHandler()
}

// InteractionPath is the ServeMux pattern Handler is served under.
const InteractionPath = "POST /slack/interactions"

// Run delivers the outbox, sends reminders, keeps messages in step with
// the store and, with an app token, holds the Socket Mode connection, until
// ctx ends.
func (s *Slack) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.runOutbox(ctx) })
	wg.Go(func() { s.runSweeper(ctx) })
	if s.appToken != "" {
		wg.Go(func() { s.runSocketMode(ctx) })
	}
	wg.Wait()
	return nil
}

// SecurityNotice posts text to the security channel (break-glass unseals,
// drills). The text is escaped, so nothing in it can become a mention, a
// broadcast or a link; *bold* and _italic_ still work. It queues the post
// and returns; delivery is retried like every other message.
func (s *Slack) SecurityNotice(ctx context.Context, text string) error {
	return s.SecurityNoticeWithLink(ctx, text, Link{})
}

// Link is a button under a security notice that opens a page of the web
// UI, for a step Slack cannot take itself (one that needs a fresh second
// factor, such as confirming a break-glass unseal).
type Link struct {
	// Text is the button's label (at most 75 characters).
	Text string
	// Path is the page under the broker's public URL, e.g.
	// /ui/breakglass/unseals/bgu_x.
	Path string
}

// SecurityNoticeWithLink posts text to the security channel like
// SecurityNotice, with a button that opens PublicURL+l.Path. Without a
// public URL the notice is posted without the button.
func (s *Slack) SecurityNoticeWithLink(ctx context.Context, text string, l Link) error {
	cur := s.settings().cfg
	ch := cur.SecurityChannel
	if ch == "" {
		ch = cur.Channel
	}
	if ch == "" {
		return errors.New("slack: security notice: no security_channel or channel configured")
	}
	it := &item{ID: "notice/" + broker.NewID("ntc"), Kind: kindNotice, Channel: ch, Text: escape(text)}
	if s.publicURL != "" && l.Text != "" && strings.HasPrefix(l.Path, "/") {
		it.LinkText, it.LinkURL = clip(l.Text, 75), s.publicURL+l.Path
	}
	if err := s.enqueue(context.WithoutCancel(ctx), nil, it); err != nil {
		return fmt.Errorf("slack: security notice: %w", err)
	}
	return nil
}

// routing is one version of the reloadable settings.
type routing struct {
	cfg     config.Slack
	targets []config.Target
}

func (s *Slack) settings() *routing { return s.routing.Load() }

// Reload applies a reloaded config's Slack routing (channel,
// security_channel, match_email, ticket_url) and targets. The tokens, the
// signing secret and api_url are read once at start.
func (s *Slack) Reload(cfg config.Slack, targets []config.Target) {
	cur := s.settings().cfg
	cur.Channel, cur.SecurityChannel, cur.MatchEmail, cur.TicketURL = cfg.Channel, cfg.SecurityChannel, cfg.MatchEmail, cfg.TicketURL
	s.routing.Store(&routing{cfg: cur, targets: targets})
}

// target returns the configured target, or nil.
func (s *Slack) target(name string) *config.Target {
	ts := s.settings().targets
	for i := range ts {
		if ts[i].Name == name {
			return &ts[i]
		}
	}
	return nil
}

// policy returns the policy of a target's role.
func (s *Slack) policy(target, role string) (config.Policy, bool) {
	t := s.target(target)
	if t == nil {
		return config.Policy{}, false
	}
	r, ok := t.FindRole(role)
	if !ok {
		return config.Policy{}, false
	}
	return r.Policy, true
}

// approveInSlack reports whether the role's requests may be decided with
// a Slack button. Unknown targets may not, nor roles whose decisions are
// electronic signatures: a button cannot collect the re-authentication.
func (s *Slack) approveInSlack(target, role string) bool {
	t := s.target(target)
	return t != nil && (t.ApproveInSlack == nil || *t.ApproveInSlack) && !s.signatureRequired(target, role)
}

// signatureRequired reports whether deciding the role is an electronic
// signature (policy.signature: required).
func (s *Slack) signatureRequired(target, role string) bool {
	p, ok := s.policy(target, role)
	return ok && p.SignatureRequiredFor()
}

// channelFor is the approval channel of a target: its slack_channel, or the
// default channel.
func (s *Slack) channelFor(target string) string {
	if t := s.target(target); t != nil && t.SlackChannel != "" {
		return t.SlackChannel
	}
	return s.settings().cfg.Channel
}

// requestURL links to the request in the web UI, or "" without a public URL.
func (s *Slack) requestURL(id string) string {
	if s.publicURL == "" {
		return ""
	}
	return s.publicURL + "/ui/requests/" + id
}

// slackIDOf returns the Slack user ID configured for a Custos user.
func (s *Slack) slackIDOf(user string) string {
	if id, ok := s.dir.Lookup(user); ok {
		return id.SlackID
	}
	return ""
}

// signal wakes the outbox worker.
func (s *Slack) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// auditEntry appends an audit record in a transaction of its own.
func (s *Slack) auditEntry(ctx context.Context, e audit.Entry) {
	if _, err := s.audit.Append(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("audit append failed", "action", e.Action, "err", err)
	}
}
