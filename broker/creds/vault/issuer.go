package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/clock"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
)

// Auditor appends audit records; *audit.Log satisfies it.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// DefaultTokenRole is the Vault token role the issuer creates per-grant
// tokens with (deploy/vault sets it up).
const DefaultTokenRole = "custos-grant"

// Options configure an Issuer. Zero fields take the documented defaults.
type Options struct {
	// Client talks to Vault. Required.
	Client *Client
	// Config holds the targets and roles. Required.
	Config *config.Config
	// Live, when set, is read on each use instead of Config, so a config
	// reload applies. Default: Config, fixed.
	Live *config.Live
	// Store persists the lease index (so a restart revokes what an
	// earlier run issued) and delivers grant events. Required for Run;
	// nil keeps the index in memory only.
	Store broker.Store
	// Audit records every issue, renewal and revocation. Required.
	Audit Auditor
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Now defaults to Clock.Now, else time.Now.
	Now func() time.Time
	// Clock decides whether a grant is active and how long it has left:
	// the earlier of its wall-clock end and its real length (see
	// broker/clock); share the broker's one Clock. Default: a Clock of
	// the Issuer's own on Now.
	Clock *clock.Clock
	// TokenRole is the token role per-grant tokens are created with.
	// Default: DefaultTokenRole.
	TokenRole string
	// SSHCertTTL caps an SSH certificate's life; it is only needed for the
	// upstream handshake. The grant's end caps it too. Default: 5m.
	SSHCertTTL time.Duration
	// SweepEvery is how often ended grants' leftover leases are looked
	// for and failed revocations retried. Default: 1s.
	SweepEvery time.Duration
}

// Issuer issues short-lived credentials for grants and revokes them when
// the grant (or, per session, the session) ends. Build it with NewIssuer;
// start Run to revoke on grant events.
type Issuer struct {
	c          *Client
	cfg        *config.Live
	store      broker.Store
	audit      Auditor
	log        *slog.Logger
	now        func() time.Time
	clock      *clock.Clock
	tokenRole  string
	sshTTL     time.Duration
	sweepEvery time.Duration

	mu     sync.Mutex
	grants map[string]*grantCreds
	ended  map[string]time.Time // grants revoked here, so nothing is issued for them again
	index  leaseIndex
}

// grantCreds is what one grant holds. mu serializes issuing and revoking
// for the grant, so concurrent sessions share one issue.
type grantCreds struct {
	mu       sync.Mutex
	shared   *issued
	sessions map[string]*issued
}

type issued struct {
	lease creds.Lease
	// token is the per-grant Vault token the lease was read with. Only in
	// memory; it expires at the grant's end on its own.
	token string
	// grantEnd is the grant's end the token and lease were last set to
	// expire at; an extension renews both to the new end.
	grantEnd time.Time
}

// NewIssuer returns an Issuer.
func NewIssuer(o Options) (*Issuer, error) {
	if o.Client == nil || o.Config == nil || o.Audit == nil {
		return nil, errors.New("vault issuer: client, config and audit are required")
	}
	i := &Issuer{
		c: o.Client, cfg: o.Live, store: o.Store, audit: o.Audit, log: o.Log, now: o.Now, clock: o.Clock,
		tokenRole: o.TokenRole, sshTTL: o.SSHCertTTL, sweepEvery: o.SweepEvery,
		grants: map[string]*grantCreds{}, ended: map[string]time.Time{},
	}
	if i.cfg == nil {
		i.cfg = config.NewLive(o.Config)
	}
	if i.log == nil {
		i.log = slog.Default()
	}
	i.log = i.log.With("component", "creds")
	if i.now == nil && i.clock != nil {
		i.now = i.clock.Now
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.clock == nil {
		i.clock = clock.New(clock.Options{Wall: i.now})
	}
	if i.tokenRole == "" {
		i.tokenRole = DefaultTokenRole
	}
	if i.sshTTL <= 0 {
		i.sshTTL = 5 * time.Minute
	}
	if i.sweepEvery <= 0 {
		i.sweepEvery = time.Second
	}
	i.index.leases = map[string]leaseRecord{}
	return i, nil
}

// role finds the configured target and role of a grant.
func (i *Issuer) role(g broker.Grant, kind string) (*config.Target, *config.Role, error) {
	t, ok := i.cfg.Load().FindTarget(g.Target)
	if !ok {
		return nil, nil, fmt.Errorf("unknown target %q", g.Target)
	}
	if t.Kind != kind {
		return nil, nil, fmt.Errorf("target %q is %s, not %s", g.Target, t.Kind, kind)
	}
	r, ok := t.FindRole(g.Role)
	if !ok {
		return nil, nil, fmt.Errorf("target %q has no role %q", g.Target, g.Role)
	}
	if err := i.checkBreakGlass(g); err != nil {
		return nil, nil, err
	}
	return t, r, nil
}

// checkActive refuses grants that are not active now or were revoked
// here. It returns the time left.
func (i *Issuer) checkActive(g broker.Grant) (time.Duration, error) {
	i.mu.Lock()
	_, ended := i.ended[g.ID]
	i.mu.Unlock()
	left := i.clock.Left(i.clock.Grant(g))
	if ended || !i.clock.Active(g) || left < time.Second {
		return 0, creds.ErrGrantEnded
	}
	return left, nil
}

func (i *Issuer) entry(grantID string) *grantCreds {
	i.mu.Lock()
	defer i.mu.Unlock()
	gc := i.grants[grantID]
	if gc == nil {
		gc = &grantCreds{sessions: map[string]*issued{}}
		i.grants[grantID] = gc
	}
	return gc
}

// ForSession returns PostgreSQL credentials for one session of grant g:
// the grant's shared login, or a login of the session's own when the role
// says per_session. Errors wrap creds.ErrVaultUnreachable when Vault does
// not answer and creds.ErrGrantEnded when the grant is over.
func (i *Issuer) ForSession(ctx context.Context, g broker.Grant, sessionID string) (creds.Lease, error) {
	if a, ok := i.breakGlassStatic(g); ok {
		return i.breakGlassLogin(ctx, g, sessionID, a)
	}
	_, r, err := i.role(g, "postgres")
	if err != nil {
		return creds.Lease{}, fmt.Errorf("creds: grant %s: %w", g.ID, err)
	}
	return i.Issue(ctx, g, sessionID, r.PerSession)
}

// Issue returns a dynamic PostgreSQL login from database/creds/<vault_role>
// for grant g: with perSession false the grant's cached login (issued on
// first use and shared by its sessions), otherwise a new login for
// sessionID. The lease never outlives the grant: it is read with a Vault
// token that expires at the grant's end (Vault revokes a token's leases
// with it) and renewed to exactly the time left, which also sets the
// role's VALID UNTIL. ExtendGrant renews both to an extended grant's new
// end.
func (i *Issuer) Issue(ctx context.Context, g broker.Grant, sessionID string, perSession bool) (creds.Lease, error) {
	t, r, err := i.role(g, "postgres")
	if err != nil {
		return creds.Lease{}, fmt.Errorf("creds: grant %s: %w", g.ID, err)
	}
	if perSession && sessionID == "" {
		return creds.Lease{}, fmt.Errorf("creds: grant %s: per-session credentials need a session id", g.ID)
	}
	gc := i.entry(g.ID)
	gc.mu.Lock()
	defer gc.mu.Unlock()
	left, err := i.checkActive(g)
	if err != nil {
		i.auditIssueFailure(ctx, g, t.Name, sessionID, err)
		return creds.Lease{}, fmt.Errorf("creds: grant %s: %w", g.ID, err)
	}
	if !perSession && gc.shared != nil && gc.shared.lease.ExpiresAt.Sub(i.now()) > 5*time.Second {
		return gc.shared.lease, nil
	}
	if !perSession {
		sessionID = ""
	}
	iss, err := i.issueDatabase(ctx, g, r.VaultRoleOrDefault(), sessionID, left)
	if err != nil {
		i.auditIssueFailure(ctx, g, t.Name, sessionID, err)
		return creds.Lease{}, fmt.Errorf("creds: grant %s: %w", g.ID, err)
	}
	if perSession {
		gc.sessions[sessionID] = iss
	} else {
		// A login being replaced is about to expire (role max_ttl shorter
		// than the grant). It stays on record: Vault ends it at its
		// expiry and the grant's revocation sweeps it up if not.
		gc.shared = iss
	}
	return iss.lease, nil
}

// displayName is the per-grant token's display name. Vault prefixes it
// with "token-" and turns every character other than letters, digits and
// "-" into "-"; the database connection's username_template puts it in the
// generated role name, so pg_stat_activity shows user and grant.
func displayName(g broker.Grant, sessionID string) string {
	if sessionID != "" {
		return g.User + "-" + g.ID + "-" + sessionID
	}
	return g.User + "-" + g.ID
}

// issueDatabase creates the per-grant token, reads the login with it,
// bounds the lease by the grant, records the lease and audits. On any
// failure after the read the lease is revoked again: nothing is handed
// out that is not recorded.
func (i *Issuer) issueDatabase(ctx context.Context, g broker.Grant, vaultRole, sessionID string, left time.Duration) (*issued, error) {
	ttl := int64(vaultLife(left) / time.Second)
	tok, err := i.c.write(ctx, "auth/token/create/"+i.tokenRole, map[string]any{
		"display_name":     displayName(g, sessionID),
		"ttl":              fmt.Sprintf("%ds", ttl),
		"explicit_max_ttl": fmt.Sprintf("%ds", ttl),
		// Renewable so an approved extension can move its end (Vault then
		// caps it at the token role's token_explicit_max_ttl, not at this
		// token's: the broker renews only to the grant's new end).
		"renewable": true,
		"meta":      map[string]string{"user": g.User, "grant": g.ID, "session": sessionID},
	})
	if err != nil {
		return nil, err
	}
	if tok == nil || tok.Auth == nil || tok.Auth.ClientToken == "" {
		return nil, errors.New("vault: token create: no token in response")
	}
	token := tok.Auth.ClientToken
	tokenEnd := i.now().Add(time.Duration(tok.Auth.LeaseDuration) * time.Second)
	path := i.c.cfg.DatabaseMount + "/creds/" + vaultRole
	s, err := i.c.callAs(ctx, token, "read "+path, func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error) {
		return api.Logical().ReadWithContext(ctx, path)
	})
	if err != nil {
		i.c.revokeSelf(ctx, token)
		return nil, err
	}
	var user, pass string
	if s != nil {
		user, _ = s.Data["username"].(string)
		pass, _ = s.Data["password"].(string)
	}
	if s == nil || s.LeaseID == "" || user == "" || pass == "" {
		i.c.revokeSelf(ctx, token)
		return nil, fmt.Errorf("vault: read %s: incomplete credentials in response", path)
	}
	iss := &issued{token: token, grantEnd: g.EffectiveEnd(), lease: creds.Lease{Username: user, Password: pass, LeaseID: s.LeaseID,
		GrantID: g.ID, SessionID: sessionID}}
	undo := func(cause error) (*issued, error) {
		i.revokeIssued(context.WithoutCancel(ctx), g.ID, iss, "issue failed")
		return nil, cause
	}
	leaseDur := time.Duration(s.LeaseDuration) * time.Second
	if leaseDur > vaultLife(left) || leaseDur <= 0 {
		// Renew to the time left (vaultLife): renewing can shorten a
		// lease, and it moves the role's VALID UNTIL with it.
		leaseDur, err = i.renew(ctx, g, iss, left)
		if err != nil {
			return undo(err)
		}
	}
	end := i.now().Add(leaseDur)
	if tokenEnd.Before(end) {
		end = tokenEnd
	}
	if ge := g.EffectiveEnd(); ge.Before(end) {
		end = ge
	}
	iss.lease.ExpiresAt = end
	rec := leaseRecord{LeaseID: s.LeaseID, Kind: "postgres", GrantID: g.ID, SessionID: sessionID,
		Username: user, Target: g.Target, VaultRole: vaultRole, IssuedAt: i.now().UTC(),
		ExpiresAt: end.UTC(), GrantEnd: g.EffectiveEnd().UTC()}
	if err := i.remember(ctx, rec); err != nil {
		return undo(fmt.Errorf("record lease: %w", err))
	}
	if _, err := i.audit.Append(ctx, audit.Entry{Actor: g.User, Action: "creds.issue", Target: g.Target,
		Outcome: broker.OutcomeSuccess, Details: map[string]any{
			"kind": "postgres", "grant_id": g.ID, "session_id": sessionID, "vault_role": vaultRole,
			"username": user, "lease_id": s.LeaseID, "expires_at": end.UTC(), "per_session": sessionID != ""},
	}); err != nil {
		return undo(fmt.Errorf("audit: %w", err))
	}
	i.log.Info("database credentials issued", "grant_id", g.ID, "session_id", sessionID,
		"username", user, "lease_id", s.LeaseID, "expires_at", end.UTC())
	return iss, nil
}

// endGrace is how long Vault keeps a database login past its grant's end.
// The broker ends the grant's sessions at the end itself, each with its
// reason ("access revoked: grant expired"), and then revokes the login;
// Vault's own expiry is the backstop for a broker that is down, and
// without the grace it would end the sessions first (its lease lengths
// are whole seconds, rounded down), with the database's words.
const endGrace = 2 * time.Second

// vaultLife is the life Vault gives a login (token, lease, VALID UNTIL)
// for left of its grant: left in whole seconds, rounded up, plus
// endGrace.
func vaultLife(left time.Duration) time.Duration {
	return (left+time.Second-1)/time.Second*time.Second + endGrace
}

// renew sets the lease's remaining life to vaultLife(d), using the
// per-grant token (its default policy may renew its own leases), and
// audits it.
func (i *Issuer) renew(ctx context.Context, g broker.Grant, iss *issued, d time.Duration) (time.Duration, error) {
	d = vaultLife(d)
	inc := int(d / time.Second)
	s, err := i.c.callAs(ctx, iss.token, "renew lease", func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error) {
		return api.Sys().RenewWithContext(ctx, iss.lease.LeaseID, inc)
	})
	outcome, reason := broker.OutcomeSuccess, ""
	var got time.Duration
	if err == nil && s != nil {
		got = time.Duration(s.LeaseDuration) * time.Second
	}
	if err == nil && (got <= 0 || got > d) {
		err = fmt.Errorf("vault: renew lease: got %s, want at most %s", got, d)
	}
	if err != nil {
		outcome, reason = broker.OutcomeError, err.Error()
	}
	if _, aerr := i.audit.Append(ctx, audit.Entry{Actor: "system", Action: "creds.renew", Target: g.Target,
		Outcome: outcome, Reason: reason, Details: map[string]any{
			"grant_id": g.ID, "session_id": iss.lease.SessionID, "lease_id": iss.lease.LeaseID,
			"username": iss.lease.Username, "ttl_s": int(got / time.Second)},
	}); aerr != nil && err == nil {
		err = fmt.Errorf("audit: %w", aerr)
	}
	return got, err
}

func (i *Issuer) auditIssueFailure(ctx context.Context, g broker.Grant, target, sessionID string, cause error) {
	outcome := broker.OutcomeError
	if errors.Is(cause, creds.ErrGrantEnded) {
		outcome = broker.OutcomeDenied
	}
	if _, err := i.audit.Append(ctx, audit.Entry{Actor: g.User, Action: "creds.issue", Target: target,
		Outcome: outcome, Reason: cause.Error(), Details: map[string]any{"grant_id": g.ID, "session_id": sessionID},
	}); err != nil {
		i.log.Error("audit creds.issue failure", "grant_id", g.ID, "err", err)
	}
	i.log.Warn("credentials not issued", "grant_id", g.ID, "session_id", sessionID, "err", cause)
}
