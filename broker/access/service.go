// Package access owns the just-in-time lifecycle: requests, decisions,
// grants, expiry and revocation. It applies broker/policy to each step,
// stores every transition with its audit record in one transaction, and
// announces grant changes so proxies can end live sessions at once.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/clock"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/broker/policy"
)

// Notifier hears about lifecycle changes after they commit, for channels
// that show them (Slack messages, the web UI). Implementations must not
// block for long; failures are theirs to retry.
type Notifier interface {
	RequestChanged(ctx context.Context, r broker.Request)
	GrantChanged(ctx context.Context, g broker.Grant)
}

// Service runs the lifecycle. Build it with New.
type Service struct {
	// cfg is the current config: a reload swaps it (targets, policies,
	// security_admins).
	cfg       *config.Live
	dir       policy.Directory
	store     broker.Store
	audit     *audit.Log
	log       *slog.Logger
	now       func() time.Time
	clock     *clock.Clock
	notifiers []Notifier
	metrics   *metrics.Metrics
	// signer runs signatures (sign.go); nil: roles that require one
	// cannot be decided.
	signer signer
}

// Options configure a Service. Zero fields take the documented defaults.
type Options struct {
	Config *config.Config
	// Live, when set, is where the config is read on each use, so a
	// reload applies; Config is then only its first version. Default:
	// Config, fixed.
	Live *config.Live
	// Directory answers group membership. Default: the config's groups.
	Directory policy.Directory
	Store     broker.Store
	Audit     *audit.Log
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Now defaults to Clock.Now, else time.Now; tests inject a clock.
	Now func() time.Time
	// Clock keeps each grant's real length, so that the scheduler ends a
	// grant when it is over even if the wall clock was stepped back (see
	// broker/clock). Share the broker's one Clock with the proxies.
	// Default: a Clock of this Service's own on Now.
	Clock *clock.Clock
	// Notifiers hear about committed changes. Default: none.
	Notifiers []Notifier
	// Metrics counts requests by state and observes approval latency.
	// Default: none.
	Metrics *metrics.Metrics
}

// New returns a Service.
func New(o Options) *Service {
	live := o.Live
	if live == nil {
		live = config.NewLive(o.Config)
	}
	s := &Service{cfg: live, dir: o.Directory, store: o.Store, audit: o.Audit, log: o.Log, now: o.Now, clock: o.Clock,
		notifiers: o.Notifiers, metrics: o.Metrics}
	if s.dir == nil {
		s.dir = policy.GroupsFromConfig(o.Config.Groups)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil && s.clock != nil {
		s.now = s.clock.Now
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.clock == nil {
		s.clock = clock.New(clock.Options{Wall: s.now})
	}
	return s
}

// Clock is the clock the Service ends grants by; the proxies share it.
func (s *Service) Clock() *clock.Clock { return s.clock }

// AddNotifier registers a notifier; call before serving.
func (s *Service) AddNotifier(n Notifier) { s.notifiers = append(s.notifiers, n) }

// NewRequest is what a user asks for.
type NewRequest struct {
	Target   string
	Role     string
	Duration time.Duration
	Reason   string
	Ticket   string
}

// Create records a pending request after policy accepts it. A refusal is
// audited and changes nothing.
func (s *Service) Create(ctx context.Context, actor string, in NewRequest) (broker.Request, error) {
	now := s.now().UTC()
	pol, err := s.policyFor(in.Target, in.Role)
	if err == nil {
		err = s.refuseBreakGlassRole(in.Target, in.Role)
	}
	if err == nil {
		err = s.checkRequest(pol, actor, in, now)
	}
	if err != nil {
		s.refused(ctx, actor, "request.create", in.Target+"/"+in.Role, err, map[string]any{"duration": in.Duration.String()})
		return broker.Request{}, err
	}
	req := broker.Request{
		ID: broker.NewID("req"), User: actor, Target: in.Target, Role: in.Role,
		Reason: in.Reason, Ticket: in.Ticket, Duration: in.Duration,
		State: broker.RequestPending, Required: pol.Approvals, Approvals: []broker.Decision{},
		CreatedAt: now, ExpiresAt: now.Add(pol.RequestTTL.D()),
	}
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		if err := tx.PutRequest(req); err != nil {
			return err
		}
		_, err := s.audit.AppendTx(ctx, tx, audit.Entry{
			Actor: actor, Action: "request.create", Target: req.Target, Outcome: broker.OutcomeSuccess,
			Reason: req.Reason, Details: requestDetails(req),
		})
		return err
	})
	if err != nil {
		return broker.Request{}, fmt.Errorf("create request: %w", err)
	}
	s.counted(req)
	s.notifyRequest(ctx, req)
	return req, nil
}

// counted records a committed request state in the metrics, and for a
// decision the time it took.
func (s *Service) counted(req broker.Request) {
	s.metrics.RequestState(string(req.State))
	if req.State == broker.RequestApproved || req.State == broker.RequestDenied {
		s.metrics.Decided(req.CreatedAt, req.DecidedAt)
	}
}

// Decision is one approver's vote.
type Decision struct {
	Approve bool
	Comment string
	// Via names the channel: cli, web or slack.
	Via string
	// Sign is the decider's electronic signature input: required when
	// the role's policy.signature is "required" (sign.go).
	Sign *esign.Input
	// StepUp is the method of a step-up the caller verified for this
	// decision, bound to this request ("passkey", "totp"), or empty. An
	// approval of a role whose policy sets step_up is refused with
	// step_up_required unless it meets the policy.
	StepUp string
}

// Decide records an approval or denial. When the approval threshold is met
// the grant is created in the same transaction and returned; for an
// extension request the extended grant is returned instead.
func (s *Service) Decide(ctx context.Context, actor, requestID string, d Decision) (broker.Request, *broker.Grant, error) {
	action := "request.deny"
	if d.Approve {
		action = "request.approve"
	}
	var (
		req      broker.Request
		grant    *broker.Grant
		extended *broker.Grant
	)
	sig, err := s.sign(ctx, actor, requestID, d)
	if err != nil {
		s.refused(ctx, actor, action, requestID, err, map[string]any{"request_id": requestID, "via": d.Via})
		return broker.Request{}, nil, err
	}
	if d.StepUp == "" {
		d.StepUp = signedStepUp(sig)
	}
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		req, err = tx.GetRequest(requestID)
		if errors.Is(err, broker.ErrNotFound) {
			return refuse(broker.KindNotFound, "not_found", "no request %s", requestID)
		}
		if err != nil {
			return err
		}
		pol, err := s.policyFor(req.Target, req.Role)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		next, err := s.decide(pol, req, actor, d, now)
		if err != nil {
			return err
		}
		if err := attachSignature(pol, req, next, actor, d, sig); err != nil {
			return err
		}
		req = next
		var oldEnd time.Time
		if req.State == broker.RequestApproved && req.IsExtension() {
			g, old, err := s.extendTx(tx, req, now)
			if err != nil {
				return err
			}
			extended, oldEnd = &g, old
			req.GrantID = g.ID
		} else if req.State == broker.RequestApproved {
			start, end := policy.GrantWindow(pol, req, now)
			g := broker.Grant{
				ID: broker.NewID("gr"), RequestID: req.ID, User: req.User, Target: req.Target, Role: req.Role,
				StartsAt: start, EndsAt: end, Approvers: approverNames(req), Reason: req.Reason,
				Ticket: req.Ticket, State: broker.GrantActive,
			}
			req.GrantID = g.ID
			if err := tx.PutGrant(g); err != nil {
				return err
			}
			grant = &g
		}
		if err := tx.PutRequest(req); err != nil {
			return err
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{
			Actor: actor, Action: action, Target: req.Target, Outcome: broker.OutcomeSuccess,
			Reason: d.Comment, Details: decisionDetails(req, d, sig),
		}); err != nil {
			return err
		}
		if extended != nil {
			return s.auditExtendTx(ctx, tx, req, *extended, oldEnd)
		}
		if grant != nil {
			tx.NotifyGrant(broker.GrantEvent{GrantID: grant.ID, State: grant.State})
			_, err := s.audit.AppendTx(ctx, tx, audit.Entry{
				Actor: "system", Action: "grant.create", Target: grant.Target, Outcome: broker.OutcomeSuccess,
				Reason: grant.Reason, Details: grantDetails(*grant),
			})
			return err
		}
		return nil
	})
	if err != nil {
		s.refused(ctx, actor, action, requestID, err, map[string]any{"request_id": requestID, "via": d.Via})
		return broker.Request{}, nil, err
	}
	if req.State != broker.RequestPending {
		s.counted(req)
	}
	s.notifyRequest(ctx, req)
	if extended != nil {
		s.notifyGrant(ctx, *extended)
		return req, extended, nil
	}
	if grant != nil {
		s.notifyGrant(ctx, *grant)
	}
	return req, grant, nil
}

// Cancel withdraws a pending request; only its requester may.
func (s *Service) Cancel(ctx context.Context, actor, requestID string) (broker.Request, error) {
	var req broker.Request
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		req, err = tx.GetRequest(requestID)
		if errors.Is(err, broker.ErrNotFound) {
			return refuse(broker.KindNotFound, "not_found", "no request %s", requestID)
		}
		if err != nil {
			return err
		}
		if !Allowed(CancelRequest, s.RequestFacts(actor, req)) {
			return refuse(broker.KindForbidden, "forbidden", "only the requester may cancel request %s", requestID)
		}
		if req.State != broker.RequestPending {
			return refuse(broker.KindConflict, "already_decided", "request %s is %s", requestID, req.State)
		}
		req.State, req.DecidedAt = broker.RequestCancelled, s.now().UTC()
		if err := tx.PutRequest(req); err != nil {
			return err
		}
		_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "request.cancel", Target: req.Target,
			Outcome: broker.OutcomeSuccess, Details: requestDetails(req)})
		return err
	})
	if err != nil {
		s.refused(ctx, actor, "request.cancel", requestID, err, map[string]any{"request_id": requestID})
		return broker.Request{}, err
	}
	s.counted(req)
	s.notifyRequest(ctx, req)
	return req, nil
}

// Revoke ends an active grant now. The grantee, a member of the role's
// approver groups and security admins may revoke.
func (s *Service) Revoke(ctx context.Context, actor, grantID, reason string) (broker.Grant, error) {
	var g broker.Grant
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		g, err = tx.GetGrant(grantID)
		if errors.Is(err, broker.ErrNotFound) {
			return refuse(broker.KindNotFound, "not_found", "no grant %s", grantID)
		}
		if err != nil {
			return err
		}
		if !s.mayRevoke(actor, g) {
			return refuse(broker.KindForbidden, "forbidden", "%s may not revoke grant %s", actor, grantID)
		}
		if g.State != broker.GrantActive {
			return refuse(broker.KindConflict, "grant_not_active", "grant %s is %s", grantID, g.State)
		}
		if reason == "" {
			reason = "revoked by " + actor
		}
		g.State, g.RevokedAt, g.RevokedBy, g.RevokeReason = broker.GrantRevoked, s.now().UTC(), actor, reason
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: g.State, Reason: reason})
		_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "grant.revoke", Target: g.Target,
			Outcome: broker.OutcomeSuccess, Reason: reason, Details: grantDetails(g)})
		return err
	})
	if err != nil {
		s.refused(ctx, actor, "grant.revoke", grantID, err, map[string]any{"grant_id": grantID})
		return broker.Grant{}, err
	}
	s.notifyGrant(ctx, g)
	return g, nil
}

func (s *Service) mayRevoke(actor string, g broker.Grant) bool {
	return Allowed(RevokeGrant, s.GrantFacts(actor, g))
}

// adminDirectory is a directory that says which of a user's groups count
// for security-admin decisions (identity.Directory: SCIM memberships only
// where the config allows).
type adminDirectory interface {
	AdminGroupsOf(user string) []string
}

func (s *Service) isSecurityAdmin(user string) bool {
	if !s.dir.Enabled(user) {
		return false
	}
	list := s.cfg.Load().SecurityAdmins
	ad, ok := s.dir.(adminDirectory)
	if !ok {
		return s.isMemberOfAny(user, list)
	}
	if slices.Contains(list, user) {
		return true
	}
	for _, g := range ad.AdminGroupsOf(user) {
		if slices.Contains(list, g) {
			return true
		}
	}
	return false
}

// IsSecurityAdmin reports whether the user is in a security_admins group.
func (s *Service) IsSecurityAdmin(user string) bool { return s.isSecurityAdmin(user) }

func (s *Service) policyFor(target, role string) (config.Policy, error) {
	t, ok := s.cfg.Load().FindTarget(target)
	if !ok {
		return config.Policy{}, refuse(broker.KindNotFound, "unknown_target", "unknown target %q", target)
	}
	r, ok := t.FindRole(role)
	if !ok {
		names := make([]string, len(t.Roles))
		for i, r := range t.Roles {
			names[i] = r.Name
		}
		return config.Policy{}, refuse(broker.KindNotFound, "unknown_role", "target %s has no role %q (roles: %s)", target, role, strings.Join(names, ", "))
	}
	return r.Policy, nil
}

// refused audits a refused or failed operation outside the (rolled back)
// transaction, so the refusal is evidence even though nothing changed.
func (s *Service) refused(ctx context.Context, actor, action, target string, err error, details map[string]any) {
	outcome, code := broker.OutcomeError, "internal"
	if e, ok := broker.AsError(err); ok {
		outcome, code = broker.OutcomeDenied, e.Code
	}
	details["code"] = code
	if _, aerr := s.audit.Append(ctx, audit.Entry{Actor: actor, Action: action, Target: target, Outcome: outcome,
		Reason: err.Error(), Details: details}); aerr != nil {
		s.log.Error("audit append failed", "action", action, "err", aerr)
	}
}

func (s *Service) notifyRequest(ctx context.Context, r broker.Request) {
	for _, n := range s.notifiers {
		n.RequestChanged(ctx, r)
	}
}

func (s *Service) notifyGrant(ctx context.Context, g broker.Grant) {
	if g.State == broker.GrantActive {
		// The grant's real length starts counting now.
		s.clock.Grant(g)
	}
	for _, n := range s.notifiers {
		n.GrantChanged(ctx, g)
	}
}

func approverNames(r broker.Request) []string {
	out := make([]string, len(r.Approvals))
	for i, a := range r.Approvals {
		out[i] = a.By
	}
	return out
}

func requestDetails(r broker.Request) map[string]any {
	m := map[string]any{"request_id": r.ID, "user": r.User, "role": r.Role, "duration": r.Duration.String(),
		"ticket": r.Ticket, "state": r.State, "expires_at": r.ExpiresAt}
	if r.IsExtension() {
		m["extends"], m["grant_ends_at"] = r.Extends, r.GrantEndsAt
	}
	return m
}

func decisionDetails(r broker.Request, d Decision, sig *broker.Signature) map[string]any {
	m := requestDetails(r)
	m["via"], m["approvals"], m["required"] = d.Via, len(r.Approvals), r.Required
	if sig != nil {
		m["signature"] = esign.Details(*sig)
	}
	return m
}

func grantDetails(g broker.Grant) map[string]any {
	return map[string]any{"grant_id": g.ID, "request_id": g.RequestID, "user": g.User, "role": g.Role,
		"starts_at": g.StartsAt, "ends_at": g.EndsAt, "approvers": g.Approvers, "state": g.State}
}

// GroupsOf returns the groups user belongs to (for SSO users, the groups
// their last sign-in mapped to).
func (s *Service) GroupsOf(user string) []string { return s.dir.GroupsOf(user) }
