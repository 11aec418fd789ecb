package access

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// schedulerTick is how often deadlines are checked; requests and grants end
// within one tick of their deadline.
const schedulerTick = 200 * time.Millisecond

// RunScheduler expires pending requests, ends grants on time and sends
// the notices of grants ending soon (NoticeEnding) until ctx ends. State lives in the store, so a restarted broker catches up at once
// with anything that fell due while it was down.
func (s *Service) RunScheduler(ctx context.Context) {
	t := time.NewTicker(schedulerTick)
	defer t.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduler sweep failed", "err", err)
		}
		if err := s.NoticeEnding(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("grant ending notices failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep expires everything due now: by the wall clock, and the grants
// whose real length is over by the Clock although the wall clock says
// otherwise (it was stepped back). It is safe to run concurrently on
// several replicas: each transition re-reads the row inside its
// transaction.
func (s *Service) Sweep(ctx context.Context) error {
	now := s.now().UTC()
	dueGrants := s.clock.Due()
	var reqs []broker.Request
	var grants []broker.Grant
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		due, err := tx.ListRequests(broker.RequestFilter{States: []broker.RequestState{broker.RequestPending}, ExpiresBefore: now.Add(time.Nanosecond)})
		if err != nil {
			return err
		}
		for _, r := range due {
			if r.State != broker.RequestPending || r.ExpiresAt.After(now) {
				continue
			}
			r.State, r.DecidedAt = broker.RequestExpired, now
			if err := tx.PutRequest(r); err != nil {
				return err
			}
			if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "request.expire", Target: r.Target,
				Outcome: broker.OutcomeSuccess, Details: requestDetails(r)}); err != nil {
				return err
			}
			reqs = append(reqs, r)
		}
		ending, err := tx.ListGrants(broker.GrantFilter{States: []broker.GrantState{broker.GrantActive}, EndsBefore: now.Add(time.Nanosecond)})
		if err != nil {
			return err
		}
		overByClock, err := s.overByClock(tx, dueGrants, ending)
		if err != nil {
			return err
		}
		for _, g := range append(ending, overByClock...) {
			if g.State != broker.GrantActive || g.EndsAt.After(now) && !s.clock.Over(g) {
				continue
			}
			g.State = broker.GrantExpired
			if err := tx.PutGrant(g); err != nil {
				return err
			}
			tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: g.State, Reason: "grant expired"})
			details := grantDetails(g)
			if left := g.EndsAt.Sub(now); left > 0 {
				// Over by its real length while the wall clock, stepped
				// back, still shows this much of it left.
				details["wall_clock_left_ms"] = left.Milliseconds()
				s.log.Warn("grant ended by its real length before its end by the wall clock: the clock was stepped back",
					"grant", g.ID, "wall_clock_left", left.String())
			}
			if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "grant.expire", Target: g.Target,
				Outcome: broker.OutcomeSuccess, Details: details}); err != nil {
				return err
			}
			grants = append(grants, g)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range dueGrants {
		s.clock.Forget(id)
	}
	for _, r := range reqs {
		s.counted(r)
		s.notifyRequest(ctx, r)
	}
	for _, g := range grants {
		s.notifyGrant(ctx, g)
	}
	return nil
}

// overByClock returns the grants among due (over by the Clock) that are
// still active in the store and not already in ending.
func (s *Service) overByClock(tx broker.Tx, due []string, ending []broker.Grant) ([]broker.Grant, error) {
	var out []broker.Grant
	for _, id := range due {
		if slices.ContainsFunc(ending, func(g broker.Grant) bool { return g.ID == id }) {
			continue
		}
		g, err := tx.GetGrant(id)
		if errors.Is(err, broker.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if g.State == broker.GrantActive {
			out = append(out, g)
		}
	}
	return out, nil
}
