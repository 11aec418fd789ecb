package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/clock"
)

// recheckTimeout bounds one grant lookup of a re-check.
const recheckTimeout = 5 * time.Second

// Resync asks for a re-check of every live session's grant at once
// (Recheck), without waiting for it: grant events may have been missed.
// Requests made while a re-check runs are folded into one more.
func (c *Core) Resync() {
	select {
	case c.resync <- struct{}{}:
	default:
	}
}

// sweep re-checks every live session's grant every SessionSweep and on
// each Resync, until the Core closes.
func (c *Core) sweep() {
	t := time.NewTicker(c.cfg.SessionSweep)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.resync:
			c.log.Info("re-checking every live session's grant after missed grant events")
		}
		c.Recheck(c.ctx)
	}
}

// Recheck looks up the grant of every tracked session by its ID and ends
// the sessions whose grant is no longer active (revoked, expired, not
// found) as TerminateGrant does: the user sees "access revoked: REASON"
// and session.terminate is audited. Sessions of a grant that was extended
// get its new end (RearmGrant). A grant that cannot be looked up (the
// store does not answer) keeps its sessions until the next re-check; its
// grant-end timer still ends them on time. It returns how many sessions
// it ended.
func (c *Core) Recheck(ctx context.Context) int {
	c.mu.Lock()
	byGrant := map[string][]*Session{}
	for _, s := range c.sessions {
		byGrant[s.Grant.ID] = append(byGrant[s.Grant.ID], s)
	}
	c.mu.Unlock()
	ended := 0
	for id, live := range byGrant {
		if ctx.Err() != nil {
			break
		}
		g, reason, over, err := c.grantOver(ctx, id)
		if err != nil {
			c.log.Warn("grant re-check failed; its sessions go on until the next re-check", "grant", id, "err", err)
			continue
		}
		if !over {
			// An extension whose event was missed still moves the end.
			c.extendSessions(live, g)
			continue
		}
		c.log.Info("grant found ended on re-check; ending its sessions", "grant", id, "sessions", len(live), "reason", reason)
		cause := &Cause{Kind: Revoked, By: "system", Reason: reason}
		for _, s := range live {
			s.terminate(cause)
		}
		for _, s := range live {
			s.waitStopped()
		}
		ended += len(live)
	}
	return ended
}

// grantOver looks grant id up and reports whether it no longer gives
// access, and the reason the user is shown.
func (c *Core) grantOver(ctx context.Context, id string) (g broker.Grant, reason string, over bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	defer cancel()
	g, err = c.cfg.Grants.GetGrant(lctx, id)
	if err != nil {
		if notFound(err) {
			return g, "grant not found", true, nil
		}
		return g, "", false, err
	}
	if c.cfg.Clock.Active(g) {
		return g, "", false, nil
	}
	return g, endReason(g, c.cfg.Clock), true, nil
}

// endReason is the reason shown for a grant found ended on a re-check:
// the same words its grant event carries.
func endReason(g broker.Grant, clk *clock.Clock) string {
	switch {
	case g.State == broker.GrantRevoked && g.RevokeReason != "":
		return g.RevokeReason
	case g.State == broker.GrantRevoked:
		return "grant revoked"
	case g.State == broker.GrantActive && !clk.Started(clk.Grant(g)):
		return "grant not yet active"
	default:
		return "grant expired"
	}
}

func notFound(err error) bool {
	if errors.Is(err, broker.ErrNotFound) {
		return true
	}
	e, ok := broker.AsError(err)
	return ok && e.Kind == broker.KindNotFound
}
