package breakglass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/identity"
)

// directory answers who the custodians are; *identity.Directory
// implements it.
type directory interface {
	Lookup(name string) (identity.Identity, bool)
	InGroup(user, group string) bool
	IsSecurityAdmin(user string) bool
}

// reauthenticator checks a custodian's password and second factor again;
// *identity.PasswordAuthenticator implements it.
type reauthenticator interface {
	Authenticate(ctx context.Context, c identity.Credentials) (identity.Identity, error)
}

// grants opens and ends the grant of an open account; *access.Service
// implements it.
type grants interface {
	GrantBreakGlassTx(ctx context.Context, tx broker.Tx, in access.BreakGlassGrant) (broker.Grant, error)
	EndBreakGlassTx(ctx context.Context, tx broker.Tx, grantID, actor, reason string) (broker.Grant, error)
	AnnounceGrant(ctx context.Context, g broker.Grant)
}

// vault reads and rotates the credentials; *vault.Issuer implements it.
type vault interface {
	StaticCreds(ctx context.Context, actor, name string) (vaultcreds.StaticCreds, error)
	RotateStatic(ctx context.Context, actor, name string) error
	SSHForSession(ctx context.Context, g broker.Grant, sessionID string) (creds.SSHCert, error)
}

// notifier posts to the security channel; the Slack integration
// implements it.
type notifier interface {
	SecurityNotice(ctx context.Context, text string) error
}

// unsealNotifier is a notifier that can also hand custodians on to where
// they confirm a pending unseal (the broker's wiring gives the Slack notice
// a button to the web UI, since Slack cannot take a fresh second factor).
// Optional: without it the notice is plain text naming the CLI command.
type unsealNotifier interface {
	UnsealRequested(ctx context.Context, text string, u Unseal) error
}

// Recording is a recorded session of a drill's probe; the broker's
// wiring returns the recorder's writer.
type Recording interface {
	Query(sql string) error
	Output(ch uint32, p []byte) error
	Note(topic, text string) error
	Close() error
}

// ProbeSession describes a drill's probe session to the recorder: the
// broker's wiring turns it into the recording's header.
type ProbeSession struct {
	// SessionID is the recording's id.
	SessionID string
	// DrillID is the drill; it stands where a session's grant would.
	DrillID string
	// StartedBy is the custodian who started the drill.
	StartedBy string
	// Target and Role are the break-glass account's target and role.
	Target, Role string
	// Protocol is "postgres" or "ssh".
	Protocol string
	// Account is the upstream login the probe used.
	Account string
	// Database is the PostgreSQL database. Default: empty.
	Database string
	// Participants are the custodians who took part in the drill.
	Participants []string
}

// RecordFunc starts the recording of a drill's probe session.
type RecordFunc func(ctx context.Context, p ProbeSession) (Recording, error)

// Options configure a Service. Config, Store, Audit, Directory,
// Authenticator, Access and Vault are required.
type Options struct {
	Config        *config.Config
	Store         broker.Store
	Audit         *audit.Log
	Directory     directory
	Authenticator reauthenticator
	Access        grants
	Vault         vault
	// Notifier receives every transition for the security channel.
	// Default: none (transitions are still audited and logged).
	Notifier notifier
	// Record records drill probes. Default: none (drills have no
	// recording id).
	Record RecordFunc
	// Registry receives the break-glass metrics. Default: a private
	// registry (not served).
	Registry *prometheus.Registry
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// Tick is how often deadlines are checked. Default: 1s.
	Tick time.Duration
}

// Service runs break-glass accounts and drills. Build it with New and run
// its scheduler with Run.
type Service struct {
	cfg      *config.Config
	store    broker.Store
	audit    *audit.Log
	dir      directory
	auth     reauthenticator
	access   grants
	vault    vault
	notify   notifier
	record   RecordFunc
	log      *slog.Logger
	now      func() time.Time
	tick     time.Duration
	limiter  *identity.SharedLimiter
	metrics  *metrics
	schedule map[string]schedule.Schedule
	// instance names this process in rotation claims.
	instance string

	mu   sync.Mutex
	busy map[string]bool // accounts with a rotation or drill running here
	wg   sync.WaitGroup
	// bg is the context background work runs under; Run sets it.
	bg context.Context
	// started is closed once Run's startup check has run.
	started chan struct{}
	// signer signs confirmations (sign.go); nil: none.
	signer signer
	// passkeys checks passkey step-ups (stepup.go); nil: none.
	passkeys passkeyVerifier
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Config == nil || o.Store == nil || o.Audit == nil || o.Directory == nil || o.Authenticator == nil || o.Access == nil || o.Vault == nil {
		return nil, errors.New("breakglass: config, store, audit, directory, authenticator, access and vault are required")
	}
	s := &Service{
		cfg: o.Config, store: o.Store, audit: o.Audit, dir: o.Directory, auth: o.Authenticator,
		access: o.Access, vault: o.Vault, notify: o.Notifier, record: o.Record, log: o.Log, now: o.Now,
		tick: o.Tick, schedule: map[string]schedule.Schedule{}, instance: broker.NewID("bgi"),
		busy: map[string]bool{}, bg: context.Background(), started: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "breakglass")
	if s.now == nil {
		s.now = time.Now
	}
	if s.tick <= 0 {
		s.tick = time.Second
	}
	// The same limit as sign-in: auth.max_failures per custodian and per
	// source address within auth.failure_window (zero: 5 in 15 minutes).
	s.limiter = identity.NewSharedLimiter(o.Store, "breakglass", o.Config.Auth.MaxFailures, o.Config.Auth.FailureWindow.D(), s.now)
	for _, a := range o.Config.BreakGlass {
		sch, err := schedule.Parse(a.Drill.ScheduleSpec())
		if err != nil {
			return nil, fmt.Errorf("breakglass: account %s: %w", a.Name, err)
		}
		s.schedule[a.Name] = sch
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("breakglass: %w", err)
	}
	s.metrics = m
	return s, nil
}

// account returns the configured account or a not-found refusal.
func (s *Service) account(name string) (*config.BreakGlassAccount, error) {
	a, ok := s.cfg.FindBreakGlass(name)
	if !ok {
		return nil, notFound("no break-glass account %q", name)
	}
	return a, nil
}

// isCustodian reports whether user is named, directly or through a group,
// as a custodian of the account, and still exists.
func (s *Service) isCustodian(a *config.BreakGlassAccount, user string) bool {
	if _, ok := s.dir.Lookup(user); !ok {
		return false
	}
	for _, c := range a.Custodians {
		if c == user || s.dir.InGroup(user, c) {
			return true
		}
	}
	return false
}

// maySee reports whether user may see the account: its custodians and
// security admins.
func (s *Service) maySee(a *config.BreakGlassAccount, user string) bool {
	return access.Allowed(access.ViewBreakGlass, s.facts(a, user))
}

// mayUnseal reports whether user may ask to unseal the account, confirm
// its unseal or report its use: its custodians.
func (s *Service) mayUnseal(a *config.BreakGlassAccount, user string) bool {
	return access.Allowed(access.UnsealBreakGlass, s.facts(a, user))
}

// facts are what the access rules need to know about user and account a.
func (s *Service) facts(a *config.BreakGlassAccount, user string) access.Facts {
	return access.Facts{Custodian: s.isCustodian(a, user), Security: s.dir.IsSecurityAdmin(user)}
}

// Factor is what a custodian presents again to confirm: the password and,
// when the account requires it, a current TOTP code.
type Factor struct {
	Password string
	TOTP     string
	// Via is the channel (cli, web, slack); Source the client address.
	Via    string
	Source string
	// Meaning is the signature's meaning, when confirmations are
	// electronic signatures (signatures.unseal).
	Meaning string
	// Passkey is a WebAuthn assertion (the PublicKeyCredential as JSON):
	// the step-up identity.step_up.breakglass_confirm asks for, or, when
	// confirmations are signatures, the signature's re-authentication.
	Passkey []byte
}

// checkFactor authenticates user again. Failures are rate-limited per user
// and per source address (auth.max_failures within auth.failure_window),
// and audited by the caller. Each check is counted as failed before it is
// made and given back when it succeeds, so parallel guesses get no more
// checks than the limit.
func (s *Service) checkFactor(ctx context.Context, a *config.BreakGlassAccount, user string, f Factor) (string, error) {
	if a.TOTPRequired() && f.TOTP == "" {
		return "", refuse(broker.KindUnauthenticated, "second_factor_required", "a current TOTP code is required to confirm (--totp)")
	}
	keys := []string{"breakglass:user:" + user}
	if f.Source != "" {
		keys = append(keys, "breakglass:addr:"+f.Source)
	}
	res, _, until, ok, err := s.limiter.Reserve(ctx, keys...)
	if err != nil {
		return "", fmt.Errorf("breakglass: second factor: %w", err)
	}
	if !ok {
		return "", refuse(broker.KindRateLimited, "too_many_attempts",
			"too many failed second-factor checks: try again after %s", until.UTC().Format(time.RFC3339))
	}
	id, err := s.auth.Authenticate(ctx, identity.Credentials{User: user, Password: f.Password, TOTP: f.TOTP, Source: f.Source})
	if err != nil {
		var ie *identity.Error
		if !errors.As(err, &ie) {
			_ = res.Release(context.WithoutCancel(ctx)) // nothing was judged wrong
			return "", fmt.Errorf("breakglass: second factor: %w", err)
		}
		// The reservation stays: it is the failure.
		e := refuse(broker.KindUnauthenticated, "second_factor_failed", "second factor check failed: wrong password or code")
		e.Detail = "second factor check failed: " + ie.Detail
		return "", e
	}
	if id.Name != user {
		return "", refuse(broker.KindUnauthenticated, "second_factor_failed", "second factor check failed: credentials of another user")
	}
	// A release or reset the store does not take leaves the attempt
	// counted, erring on the side of the limit.
	_ = res.Release(context.WithoutCancel(ctx))
	_ = s.limiter.Reset(context.WithoutCancel(ctx), keys[0])
	if a.TOTPRequired() {
		return "password+totp", nil
	}
	return "password", nil
}

// refused audits a refused operation outside its (rolled back)
// transaction.
func (s *Service) refused(ctx context.Context, actor, action, target string, err error, details map[string]any) {
	outcome, code, reason := broker.OutcomeError, "internal", err.Error()
	if e, ok := AsError(err); ok {
		outcome, code = broker.OutcomeDenied, e.Code
		if e.Detail != "" {
			reason = e.Detail
		}
	}
	if details == nil {
		details = map[string]any{}
	}
	details["code"] = code
	if _, aerr := s.audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: actor, Action: action, Target: target,
		Outcome: outcome, Reason: reason, Details: details}); aerr != nil {
		s.log.Error("audit append failed", "action", action, "err", aerr)
	}
}

// announce posts a notice to the security channel; failures are logged,
// never fatal (the audit log has the record).
func (s *Service) announce(ctx context.Context, text string) {
	if s.notify == nil {
		s.log.Info("break-glass notice (no notifier)", "text", text)
		return
	}
	if err := s.notify.SecurityNotice(context.WithoutCancel(ctx), text); err != nil {
		s.log.Error("break-glass notice not sent", "err", err)
	}
}

// announceUnseal posts the notice of a pending unseal, handing custodians
// on to confirm it when the notifier can.
func (s *Service) announceUnseal(ctx context.Context, text string, u Unseal) {
	n, ok := s.notify.(unsealNotifier)
	if !ok {
		s.announce(ctx, text)
		return
	}
	if err := n.UnsealRequested(context.WithoutCancel(ctx), text, u); err != nil {
		s.log.Error("break-glass notice not sent", "err", err)
	}
}

// AccountView is an account as the API shows it: its configuration and
// its state.
type AccountView struct {
	Account
	Target          string   `json:"target"`
	Role            string   `json:"role"`
	Credential      string   `json:"credential"`
	Custodians      []string `json:"custodians"`
	Required        int      `json:"required"`
	SingleCustodian bool     `json:"single_custodian"`
	MaxOpen         string   `json:"max_open"`
	Reveal          bool     `json:"reveal"`
	Drill           DrillDue `json:"drill"`
}

// DrillDue is an account's drill schedule as of now.
type DrillDue struct {
	Schedule string    `json:"schedule"`
	NextDue  time.Time `json:"next_due,omitzero"`
	Overdue  bool      `json:"overdue"`
}

func (s *Service) view(a *config.BreakGlassAccount, st Account, now time.Time) AccountView {
	due := s.due(a.Name, st, now)
	return AccountView{Account: st, Target: a.Target, Role: a.Role, Credential: a.Credential.Type,
		Custodians: slices.Clone(a.Custodians), Required: a.Required, SingleCustodian: a.SingleCustodian,
		MaxOpen: a.MaxOpen.D().String(), Reveal: a.Reveal, Drill: due}
}

// List returns the accounts the actor may see: their custodians and
// security admins see each account.
func (s *Service) List(ctx context.Context, actor string) ([]AccountView, error) {
	now := s.now().UTC()
	var out []AccountView
	err := s.store.View(ctx, func(tx broker.Tx) error {
		for i := range s.cfg.BreakGlass {
			a := &s.cfg.BreakGlass[i]
			if !s.maySee(a, actor) {
				continue
			}
			st, err := loadAccount(tx, a.Name, now)
			if err != nil {
				return err
			}
			out = append(out, s.view(a, st, now))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("breakglass: list: %w", err)
	}
	return out, nil
}

// Status returns one account.
func (s *Service) Status(ctx context.Context, actor, name string) (AccountView, error) {
	a, err := s.account(name)
	if err != nil {
		return AccountView{}, err
	}
	if !s.maySee(a, actor) {
		return AccountView{}, forbidden("forbidden", "%s is not a custodian of %s", actor, name)
	}
	now := s.now().UTC()
	var st Account
	err = s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		st, err = loadAccount(tx, name, now)
		return err
	})
	if err != nil {
		return AccountView{}, fmt.Errorf("breakglass: status %s: %w", name, err)
	}
	return s.view(a, st, now), nil
}
