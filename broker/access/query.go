package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
)

// GetRequest returns one request.
func (s *Service) GetRequest(ctx context.Context, id string) (broker.Request, error) {
	var r broker.Request
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		r, err = tx.GetRequest(id)
		return err
	})
	if errors.Is(err, broker.ErrNotFound) {
		return r, refuse(broker.KindNotFound, "not_found", "no request %s", id)
	}
	return r, err
}

// ListRequests returns requests matching f.
func (s *Service) ListRequests(ctx context.Context, f broker.RequestFilter) ([]broker.Request, error) {
	var out []broker.Request
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		out, err = tx.ListRequests(f)
		return err
	})
	return out, err
}

// PendingFor returns pending requests the user may decide: not their own,
// and on roles whose approvers include them.
func (s *Service) PendingFor(ctx context.Context, user string) ([]broker.Request, error) {
	all, err := s.ListRequests(ctx, broker.RequestFilter{States: []broker.RequestState{broker.RequestPending}})
	if err != nil {
		return nil, err
	}
	out := []broker.Request{}
	for _, r := range all {
		if !Allowed(DecideRequest, s.RequestFacts(user, r)) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// GetGrant returns one grant.
func (s *Service) GetGrant(ctx context.Context, id string) (broker.Grant, error) {
	var g broker.Grant
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		g, err = tx.GetGrant(id)
		return err
	})
	if errors.Is(err, broker.ErrNotFound) {
		return g, refuse(broker.KindNotFound, "not_found", "no grant %s", id)
	}
	return g, err
}

// ListGrants returns grants matching f.
func (s *Service) ListGrants(ctx context.Context, f broker.GrantFilter) ([]broker.Grant, error) {
	var out []broker.Grant
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		out, err = tx.ListGrants(f)
		return err
	})
	return out, err
}

// ActiveGrant returns the user's grant on target that is active now, the
// one ending last when there are several. It returns an *Error with code
// "no_active_grant" when there is none.
func (s *Service) ActiveGrant(ctx context.Context, user, target string) (broker.Grant, error) {
	return s.ActiveGrantAs(ctx, user, target, "")
}

// ActiveGrantAs is ActiveGrant for one role of the target; role "" means
// any role. A user the directory does not enable (disabled or removed in
// config) has none: the refusal's code is "user_disabled".
func (s *Service) ActiveGrantAs(ctx context.Context, user, target, role string) (broker.Grant, error) {
	if !s.dir.Enabled(user) {
		// A disabled or removed user's grants are revoked at start; this
		// holds even for one that was missed.
		return broker.Grant{}, refuse(broker.KindForbidden, "user_disabled", "user %s is disabled", user)
	}
	// Active by the Clock's rule, not by the wall clock alone: a clock
	// stepped back neither suspends a running grant nor extends one.
	gs, err := s.ListGrants(ctx, broker.GrantFilter{User: user, Target: target,
		States: []broker.GrantState{broker.GrantActive}})
	if err != nil {
		return broker.Grant{}, fmt.Errorf("active grant: %w", err)
	}
	var best broker.Grant
	for _, g := range gs {
		if s.clock.Active(g) && (role == "" || g.Role == role) && g.EndsAt.After(best.EndsAt) {
			best = g
		}
	}
	if best.ID == "" && role != "" {
		return best, refuse(broker.KindForbidden, "no_active_grant", "no active grant for %s as role %s", target, role)
	}
	if best.ID == "" {
		return best, refuse(broker.KindForbidden, "no_active_grant", "no active grant for %s", target)
	}
	return best, nil
}

// AccessAt answers "who could reach target at instant at": every grant
// active then, with its approvers.
func (s *Service) AccessAt(ctx context.Context, target string, at time.Time) ([]broker.Grant, error) {
	if _, ok := s.cfg.Load().FindTarget(target); !ok {
		return nil, refuse(broker.KindNotFound, "unknown_target", "unknown target %q", target)
	}
	gs, err := s.ListGrants(ctx, broker.GrantFilter{Target: target, ActiveAt: at})
	if err != nil {
		return nil, err
	}
	out := []broker.Grant{}
	for _, g := range gs {
		if g.ActiveAt(at) {
			out = append(out, g)
		}
	}
	return out, nil
}
