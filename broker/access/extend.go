package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/policy"
)

// NewExtension is a grant holder's ask for more time on their grant.
type NewExtension struct {
	GrantID  string
	Duration time.Duration
	Reason   string
	Ticket   string
}

// Extend records a pending extension request for an active grant of the
// actor's. It goes through the same approval path as a request for the
// grant's role: the same approvers and threshold, never self-approved,
// and max_duration bounds the grant's whole length, extensions included.
// Refused: a grant the actor may not see (not_found), another user's
// grant (forbidden), a grant that is not active (grant_not_active), a
// break-glass grant (breakglass_role), a grant with an extension already
// pending (extension_pending). A refusal is audited and changes nothing.
func (s *Service) Extend(ctx context.Context, actor string, in NewExtension) (broker.Request, error) {
	now := s.now().UTC()
	var req broker.Request
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		g, err := tx.GetGrant(in.GrantID)
		if errors.Is(err, broker.ErrNotFound) || (err == nil && !Allowed(ViewGrant, s.GrantFacts(actor, g))) {
			return refuse(broker.KindNotFound, "not_found", "no grant %s", in.GrantID)
		}
		if err != nil {
			return err
		}
		if g.User != actor {
			return refuse(broker.KindForbidden, "forbidden", "only %s, who holds grant %s, may extend it", g.User, g.ID)
		}
		if g.BreakGlass != "" {
			return refuse(broker.KindForbidden, "breakglass_role", "grant %s is a break-glass unseal; it cannot be extended", g.ID)
		}
		if g.State != broker.GrantActive || !g.ActiveAt(now) {
			return refuse(broker.KindConflict, "grant_not_active", "grant %s is %s", g.ID, grantStateWord(g, now))
		}
		pol, err := s.policyFor(g.Target, g.Role)
		if err != nil {
			return err
		}
		ticket := in.Ticket
		if ticket == "" {
			ticket = g.Ticket
		}
		if err := fromPolicy(policy.CheckExtension(pol, s.dir, actor, g, in.Duration, in.Reason, ticket, now)); err != nil {
			return err
		}
		pending, err := tx.ListRequests(broker.RequestFilter{User: actor, Target: g.Target, States: []broker.RequestState{broker.RequestPending}})
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(pending, func(r broker.Request) bool { return r.Extends == g.ID }); i >= 0 {
			return refuse(broker.KindConflict, "extension_pending", "extension %s of grant %s is still pending", pending[i].ID, g.ID)
		}
		req = broker.Request{
			ID: broker.NewID("req"), User: actor, Target: g.Target, Role: g.Role,
			Reason: in.Reason, Ticket: ticket, Duration: in.Duration,
			State: broker.RequestPending, Required: policy.Approvals(pol), Approvals: []broker.Decision{},
			CreatedAt: now, ExpiresAt: now.Add(policy.RequestTTL(pol)),
			Extends: g.ID, GrantEndsAt: g.EndsAt,
		}
		if err := tx.PutRequest(req); err != nil {
			return err
		}
		_, err = s.audit.AppendTx(ctx, tx, audit.Entry{
			Actor: actor, Action: "request.create", Target: req.Target, Outcome: broker.OutcomeSuccess,
			Reason: req.Reason, Details: requestDetails(req),
		})
		return err
	})
	if err != nil {
		s.refused(ctx, actor, "request.create", in.GrantID, err, map[string]any{"extends": in.GrantID, "duration": in.Duration.String()})
		return broker.Request{}, err
	}
	s.counted(req)
	s.notifyRequest(ctx, req)
	return req, nil
}

// extendTx applies an approved extension request to its grant inside the
// deciding transaction: the grant must still be active and the holder's,
// and its whole length stays within the policy's current max_duration
// (rechecked here, so two extensions approved one after the other cannot
// chain past it). The grant's end moves and the approvers join its
// approvers; proxies re-arm their timers from the announced event. It
// returns the grant's old end for auditExtendTx.
func (s *Service) extendTx(tx broker.Tx, req broker.Request, now time.Time) (broker.Grant, time.Time, error) {
	g, err := tx.GetGrant(req.Extends)
	if errors.Is(err, broker.ErrNotFound) {
		return broker.Grant{}, time.Time{}, refuse(broker.KindConflict, "grant_not_active", "grant %s no longer exists", req.Extends)
	}
	if err != nil {
		return broker.Grant{}, time.Time{}, err
	}
	if g.User != req.User || g.Target != req.Target || g.Role != req.Role {
		return broker.Grant{}, time.Time{}, fmt.Errorf("extension %s does not match grant %s", req.ID, g.ID)
	}
	if g.State != broker.GrantActive || !g.ActiveAt(now) {
		return broker.Grant{}, time.Time{}, refuse(broker.KindConflict, "grant_not_active", "grant %s is %s; the extension cannot apply", g.ID, grantStateWord(g, now))
	}
	pol, err := s.policyFor(g.Target, g.Role)
	if err != nil {
		return broker.Grant{}, time.Time{}, err
	}
	end, err := policy.ExtendedEnd(pol, g, req.Duration, now)
	if err != nil {
		return broker.Grant{}, time.Time{}, fromPolicy(err)
	}
	old := g.EndsAt
	g.EndsAt = end
	for _, a := range approverNames(req) {
		if !slices.Contains(g.Approvers, a) {
			g.Approvers = append(g.Approvers, a)
		}
	}
	g.Extensions = append(slices.Clone(g.Extensions), req.ID)
	if err := tx.PutGrant(g); err != nil {
		return broker.Grant{}, time.Time{}, err
	}
	tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: g.State, Reason: "grant extended"})
	return g, old, nil
}

// auditExtendTx records grant.extend with the grant's old and new end.
func (s *Service) auditExtendTx(ctx context.Context, tx broker.Tx, req broker.Request, g broker.Grant, old time.Time) error {
	d := grantDetails(g)
	d["extension_request_id"], d["old_ends_at"], d["new_ends_at"] = req.ID, old, g.EndsAt
	_, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "grant.extend", Target: g.Target,
		Outcome: broker.OutcomeSuccess, Reason: req.Reason, Details: d})
	return err
}

// grantStateWord says how a grant that gives no access stands.
func grantStateWord(g broker.Grant, now time.Time) string {
	if g.State == broker.GrantActive && !now.Before(g.EffectiveEnd()) {
		return "expired"
	}
	if g.State == broker.GrantActive && now.Before(g.StartsAt) {
		return "not yet active"
	}
	return string(g.State)
}
