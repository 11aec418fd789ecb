package access

import (
	"context"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Deprovisioned counts what RevokeDisabled ended.
type Deprovisioned struct {
	// Grants are the active grants revoked; live sessions on them end
	// through the grant events.
	Grants []broker.Grant
	// Requests are the pending requests cancelled.
	Requests []broker.Request
}

// RevokeDisabled ends the access of every user the directory does not
// enable (disabled, or removed from config): each of their active grants
// is revoked and each of their pending requests cancelled, with actor
// "system" and a grant.revoke or request.cancel audit record in the same
// transaction. Grant revocations are announced, so proxies on every
// replica end the users' live sessions. The broker calls it at start,
// since config is read then.
func (s *Service) RevokeDisabled(ctx context.Context) (Deprovisioned, error) {
	var out Deprovisioned
	grants, err := s.ListGrants(ctx, broker.GrantFilter{States: []broker.GrantState{broker.GrantActive}})
	if err != nil {
		return out, fmt.Errorf("revoke disabled users: %w", err)
	}
	for _, g := range grants {
		if s.dir.Enabled(g.User) {
			continue
		}
		reason := "user " + g.User + " is disabled or removed in config"
		revoked, changed, err := s.revokeAsSystem(ctx, g.ID, reason)
		if err != nil {
			return out, fmt.Errorf("revoke disabled users: grant %s: %w", g.ID, err)
		}
		if changed {
			s.notifyGrant(ctx, revoked)
			out.Grants = append(out.Grants, revoked)
		}
	}
	reqs, err := s.ListRequests(ctx, broker.RequestFilter{States: []broker.RequestState{broker.RequestPending}})
	if err != nil {
		return out, fmt.Errorf("revoke disabled users: %w", err)
	}
	for _, r := range reqs {
		if s.dir.Enabled(r.User) {
			continue
		}
		cancelled, changed, err := s.cancelAsSystem(ctx, r.ID, "user "+r.User+" is disabled or removed in config")
		if err != nil {
			return out, fmt.Errorf("revoke disabled users: request %s: %w", r.ID, err)
		}
		if changed {
			s.notifyRequest(ctx, cancelled)
			out.Requests = append(out.Requests, cancelled)
		}
	}
	return out, nil
}

// RevokeUser ends user's access whatever the directory says: each of
// their active grants is revoked and each pending request cancelled, as
// RevokeDisabled does, with reason in the records. SCIM provisioning calls
// it when it deactivates or deletes a user or removes them from a group.
func (s *Service) RevokeUser(ctx context.Context, user, reason string) (Deprovisioned, error) {
	var out Deprovisioned
	if user == "" {
		return out, nil
	}
	grants, err := s.ListGrants(ctx, broker.GrantFilter{User: user, States: []broker.GrantState{broker.GrantActive}})
	if err != nil {
		return out, fmt.Errorf("revoke user %s: %w", user, err)
	}
	for _, g := range grants {
		revoked, changed, err := s.revokeAsSystem(ctx, g.ID, reason)
		if err != nil {
			return out, fmt.Errorf("revoke user %s: grant %s: %w", user, g.ID, err)
		}
		if changed {
			s.notifyGrant(ctx, revoked)
			out.Grants = append(out.Grants, revoked)
		}
	}
	reqs, err := s.ListRequests(ctx, broker.RequestFilter{User: user, States: []broker.RequestState{broker.RequestPending}})
	if err != nil {
		return out, fmt.Errorf("revoke user %s: %w", user, err)
	}
	for _, r := range reqs {
		cancelled, changed, err := s.cancelAsSystem(ctx, r.ID, reason)
		if err != nil {
			return out, fmt.Errorf("revoke user %s: request %s: %w", user, r.ID, err)
		}
		if changed {
			s.notifyRequest(ctx, cancelled)
			out.Requests = append(out.Requests, cancelled)
		}
	}
	return out, nil
}

// revokeAsSystem revokes grant id if it is still active.
func (s *Service) revokeAsSystem(ctx context.Context, id, reason string) (broker.Grant, bool, error) {
	var g broker.Grant
	changed := false
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		if g, err = tx.GetGrant(id); err != nil || g.State != broker.GrantActive {
			return err
		}
		g.State, g.RevokedAt, g.RevokedBy, g.RevokeReason = broker.GrantRevoked, s.now().UTC(), "system", reason
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: g.State, Reason: reason})
		d := grantDetails(g)
		if g.BreakGlass != "" {
			d["break_glass"] = g.BreakGlass
		}
		changed = true
		_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "grant.revoke", Target: g.Target,
			Outcome: broker.OutcomeSuccess, Reason: reason, Details: d})
		return err
	})
	return g, changed && err == nil, err
}

// cancelAsSystem cancels request id if it is still pending.
func (s *Service) cancelAsSystem(ctx context.Context, id, reason string) (broker.Request, bool, error) {
	var r broker.Request
	changed := false
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		if r, err = tx.GetRequest(id); err != nil || r.State != broker.RequestPending {
			return err
		}
		r.State, r.DecidedAt = broker.RequestCancelled, s.now().UTC()
		if err := tx.PutRequest(r); err != nil {
			return err
		}
		changed = true
		_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "request.cancel", Target: r.Target,
			Outcome: broker.OutcomeSuccess, Reason: reason, Details: requestDetails(r)})
		return err
	})
	return r, changed && err == nil, err
}
