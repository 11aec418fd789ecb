package breakglass

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/config"
)

// heartbeatEvery is how often a running broker records that it is up; a
// start finding the last heartbeat older than an account's offline window
// treats the gap as an out-of-band unseal.
const heartbeatEvery = 10 * time.Second

// overdueRepeat is how often an overdue drill is announced again.
const overdueRepeat = 24 * time.Hour

type heartbeat struct {
	At       time.Time `json:"at"`
	Instance string    `json:"instance"`
}

// Run checks for an outage since the last run, then closes and rotates
// accounts on time, expires unconfirmed unseals, retries rotations of
// compromised accounts, and reminds of and flags drills, until ctx ends.
// State lives in the store, so a restarted broker picks up where the last
// one stopped.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	s.bg = ctx
	s.mu.Unlock()
	defer s.wg.Wait()
	for ctx.Err() == nil {
		if err := s.startup(ctx); err == nil {
			break
		} else {
			s.log.Error("break-glass startup check failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	close(s.started)
	t := time.NewTicker(s.tick)
	defer t.Stop()
	lastBeat := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if time.Since(lastBeat) >= heartbeatEvery {
			if err := s.beat(ctx); err != nil {
				s.log.Error("break-glass heartbeat not written", "err", err)
			} else {
				lastBeat = time.Now()
			}
		}
		if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("break-glass sweep failed", "err", err)
		}
	}
}

// Started is closed once Run has checked for an outage since the last run
// and recorded this start.
func (s *Service) Started() <-chan struct{} { return s.started }

func (s *Service) background() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bg
}

func (s *Service) beat(ctx context.Context) error {
	return s.store.Update(ctx, func(tx broker.Tx) error {
		return putJSON(tx, heartbeatKey, heartbeat{At: s.now().UTC(), Instance: s.instance})
	})
}

// startup records accounts seen for the first time and, when the broker
// was unavailable longer than an account's offline window, rotates the
// account as an out-of-band unseal and asks its custodians what happened.
func (s *Service) startup(ctx context.Context) error {
	now := s.now().UTC()
	var (
		rotate []*config.BreakGlassAccount
		grants []broker.Grant
		drills []string
		from   time.Time
	)
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		rotate, grants, drills = nil, nil, nil
		hb, seen, err := getJSON[heartbeat](tx, heartbeatKey)
		if err != nil {
			return err
		}
		from = hb.At
		for i := range s.cfg.BreakGlass {
			a := &s.cfg.BreakGlass[i]
			st, err := loadAccount(tx, a.Name, now)
			if err != nil {
				return err
			}
			if seen && now.Sub(hb.At) > a.OfflineWindow.D() {
				g, drill, err := s.outOfBandTx(ctx, tx, a, &st, hb.At, now)
				if err != nil {
					return err
				}
				if g != nil {
					grants = append(grants, *g)
				}
				if drill != "" {
					drills = append(drills, drill)
				}
				rotate = append(rotate, a)
			}
			if err := saveAccount(tx, st); err != nil {
				return err
			}
			s.metrics.state(a.Name, st.State)
			s.metrics.setOverdue(a.Name, s.due(a.Name, st, now).Overdue)
		}
		return putJSON(tx, heartbeatKey, heartbeat{At: now, Instance: s.instance})
	})
	if err != nil {
		return fmt.Errorf("breakglass: startup: %w", err)
	}
	for _, g := range grants {
		s.access.AnnounceGrant(ctx, g)
	}
	for _, id := range drills {
		s.failDrill(ctx, id, "the broker was unavailable during the drill")
	}
	for _, a := range rotate {
		s.log.Warn("broker was unavailable longer than the offline window: rotating break-glass account as an out-of-band unseal",
			"account", a.Name, "down_from", from, "down_until", now)
		s.announce(ctx, fmt.Sprintf(":rotating_light: the broker was unavailable from %s to %s (%s), longer than the offline window of %s: break-glass account %s may have been used out of band and is being rotated. Custodians (%s): if you used it, record what happened with: custos breakglass report %s --incident ID --details TEXT",
			from.Format(time.RFC3339), now.Format(time.RFC3339), now.Sub(from).Round(time.Second), a.OfflineWindow.D(), a.Name,
			strings.Join(a.Custodians, ", "), a.Name))
		s.goRotate(ctx, a)
	}
	idx, err := s.drillIndex(ctx)
	if err == nil {
		s.metrics.drillCounts(idx, schedule.Quarter(now))
	}
	return nil
}

// outOfBandTx records an outage as an out-of-band unseal of the account and
// claims its rotation, whatever state the outage left it in.
func (s *Service) outOfBandTx(ctx context.Context, tx broker.Tx, a *config.BreakGlassAccount, st *Account, from, until time.Time) (*broker.Grant, string, error) {
	st.OutOfBand = &OutOfBand{DownFrom: from, DownUntil: until}
	reason := fmt.Sprintf("broker unavailable for %s, longer than the offline window of %s", until.Sub(from).Round(time.Second), a.OfflineWindow.D())
	if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "breakglass.unseal.out_of_band", Target: a.Target,
		Outcome: broker.OutcomeSuccess, Reason: reason, Details: map[string]any{"account": a.Name, "down_from": from,
			"down_until": until, "state": st.State, "custodians": a.Custodians}}); err != nil {
		return nil, "", err
	}
	var (
		grant *broker.Grant
		drill string
		err   error
	)
	switch st.State {
	case StateOpen:
		drill = st.Unseal.Drill
		grant, err = s.beginRotateTx(ctx, tx, a, st, "system", "out-of-band: "+reason, until)
	case StateUnsealRequested:
		drill = st.Unseal.Drill
		if err = s.cancelTx(ctx, tx, a, st, "system", UnsealExpired, reason, until); err == nil {
			err = s.claimTx(ctx, tx, a, st, "system", "out-of-band: "+reason, until)
		}
	default:
		err = s.claimTx(ctx, tx, a, st, "system", "out-of-band: "+reason, until)
	}
	return grant, drill, err
}

// goRotate rotates a claimed account in the background.
func (s *Service) goRotate(ctx context.Context, a *config.BreakGlassAccount) {
	if !s.acquire(a.Name) {
		return
	}
	s.wg.Go(func() {
		defer s.release(a.Name)
		_, _ = s.rotateHeld(context.WithoutCancel(ctx), a, "system")
	})
}

// sweep acts on every account whose deadline passed.
func (s *Service) sweep(ctx context.Context) error {
	now := s.now().UTC()
	states := map[string]Account{}
	err := s.store.View(ctx, func(tx broker.Tx) error {
		for i := range s.cfg.BreakGlass {
			st, err := loadAccount(tx, s.cfg.BreakGlass[i].Name, now)
			if err != nil {
				return err
			}
			states[st.Name] = st
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range s.cfg.BreakGlass {
		a := &s.cfg.BreakGlass[i]
		st := states[a.Name]
		s.metrics.state(a.Name, st.State)
		switch {
		case st.State == StateUnsealRequested && !now.Before(st.Unseal.ExpiresAt):
			s.expire(ctx, a, st.Unseal.ID)
		case st.State == StateOpen && !now.Before(st.Unseal.OpenUntil):
			s.timeout(ctx, a, st.Unseal.ID)
		case st.State == StateRotating && (st.RotatingBy == s.instance || now.Sub(st.RotatingSince) > staleClaim):
			s.takeOver(ctx, a, func(st Account) bool {
				return st.State == StateRotating && (st.RotatingBy == s.instance || now.Sub(st.RotatingSince) > staleClaim)
			}, "resume rotation: "+st.RotateReason)
		case st.State == StateCompromised && now.Sub(st.LastAlert) >= a.AlertEvery.D():
			s.takeOver(ctx, a, func(st Account) bool {
				return st.State == StateCompromised && now.Sub(st.LastAlert) >= a.AlertEvery.D()
			}, "retry: "+st.RotateReason)
		}
		s.drillDue(ctx, a, st, now)
	}
	s.restoreOverdue(ctx, now)
	return nil
}

// expire ends an unseal that did not gather its confirmations in time.
func (s *Service) expire(ctx context.Context, a *config.BreakGlassAccount, id string) {
	now := s.now().UTC()
	var drill string
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, a.Name, now)
		if err != nil {
			return err
		}
		if st.State != StateUnsealRequested || st.Unseal.ID != id || now.Before(st.Unseal.ExpiresAt) {
			return nil
		}
		drill = st.Unseal.Drill
		reason := fmt.Sprintf("%d of %d confirmations within %s", len(st.Unseal.Confirmations), st.Unseal.Required, a.ConfirmWithin.D())
		if err := s.cancelTx(ctx, tx, a, &st, "system", UnsealExpired, reason, now); err != nil {
			return err
		}
		return saveAccount(tx, st)
	})
	if err != nil {
		s.log.Error("break-glass unseal not expired", "account", a.Name, "err", err)
		return
	}
	s.announce(ctx, fmt.Sprintf("break-glass unseal %s of %s expired without enough confirmations; still sealed", id, a.Name))
	if drill != "" {
		s.failDrill(ctx, drill, "unseal: confirmations not gathered within "+a.ConfirmWithin.D().String())
	}
}

// timeout closes an account whose open window ended, and rotates it. A
// drill still running in this process closes it itself.
func (s *Service) timeout(ctx context.Context, a *config.BreakGlassAccount, id string) {
	if !s.acquire(a.Name) {
		return
	}
	now := s.now().UTC()
	var (
		grant *broker.Grant
		drill string
		ok    bool
	)
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, a.Name, now)
		if err != nil {
			return err
		}
		if st.State != StateOpen || st.Unseal.ID != id || now.Before(st.Unseal.OpenUntil) {
			return nil
		}
		drill = st.Unseal.Drill
		if grant, err = s.beginRotateTx(ctx, tx, a, &st, "system", "open window of "+a.MaxOpen.D().String()+" ended", now); err != nil {
			return err
		}
		ok = true
		return saveAccount(tx, st)
	})
	if err != nil || !ok {
		s.release(a.Name)
		if err != nil {
			s.log.Error("break-glass account not closed", "account", a.Name, "err", err)
		}
		return
	}
	if grant != nil {
		s.access.AnnounceGrant(ctx, *grant)
	}
	s.announce(ctx, fmt.Sprintf("break-glass account %s: open window ended; access revoked, rotating", a.Name))
	s.wg.Go(func() {
		defer s.release(a.Name)
		bg := context.WithoutCancel(ctx)
		if drill != "" {
			s.failDrill(bg, drill, "timed out: the drill did not finish within max_open "+a.MaxOpen.D().String())
		}
		_, _ = s.rotateHeld(bg, a, "system")
	})
}

// takeOver claims a rotation for this process when cond still holds in
// the store, then rotates in the background.
func (s *Service) takeOver(ctx context.Context, a *config.BreakGlassAccount, cond func(Account) bool, reason string) {
	if !s.acquire(a.Name) {
		return
	}
	now := s.now().UTC()
	var ok bool
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, a.Name, now)
		if err != nil || !cond(st) {
			return err
		}
		if err := s.claimTx(ctx, tx, a, &st, "system", reason, now); err != nil {
			return err
		}
		ok = true
		return saveAccount(tx, st)
	})
	if err != nil || !ok {
		s.release(a.Name)
		if err != nil {
			s.log.Error("break-glass rotation not claimed", "account", a.Name, "err", err)
		}
		return
	}
	s.wg.Go(func() {
		defer s.release(a.Name)
		_, _ = s.rotateHeld(context.WithoutCancel(ctx), a, "system")
	})
}

// drillDue reminds custodians before a drill is due and flags it when it
// is overdue, on /metrics and in the security channel.
func (s *Service) drillDue(ctx context.Context, a *config.BreakGlassAccount, st Account, now time.Time) {
	due := s.due(a.Name, st, now)
	s.metrics.setOverdue(a.Name, due.Overdue)
	if due.NextDue.IsZero() {
		return
	}
	remind, overdue := drillNotice(due, st, a.Drill.RemindBefore.D(), now)
	if !remind && !overdue {
		return
	}
	action, text := "breakglass.drill.reminder", fmt.Sprintf("break-glass drill of %s is due %s. Custodians (%s): custos drill run %s",
		a.Name, due.NextDue.Format(time.RFC3339), strings.Join(a.Custodians, ", "), a.Name)
	if overdue {
		action, text = "breakglass.drill.overdue", fmt.Sprintf(":warning: break-glass drill of %s is OVERDUE: it was due %s. Custodians (%s): custos drill run %s",
			a.Name, due.NextDue.Format(time.RFC3339), strings.Join(a.Custodians, ", "), a.Name)
	}
	sent := false
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		cur, err := loadAccount(tx, a.Name, now)
		if err != nil {
			return err
		}
		// Another replica may have sent it meanwhile.
		if r, o := drillNotice(due, cur, a.Drill.RemindBefore.D(), now); r != remind || o != overdue {
			return nil
		}
		if overdue {
			cur.OverdueFor, cur.LastOverdueNotice = due.NextDue, now
		} else {
			cur.RemindedFor = due.NextDue
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: action, Target: a.Target,
			Outcome: broker.OutcomeSuccess, Details: map[string]any{"account": a.Name, "due": due.NextDue, "schedule": due.Schedule}}); err != nil {
			return err
		}
		sent = true
		return saveAccount(tx, cur)
	})
	if err != nil {
		s.log.Error("drill notice not recorded", "account", a.Name, "err", err)
		return
	}
	if sent {
		s.announce(ctx, text)
	}
}

// drillNotice decides whether a drill needs a reminder (once per due
// date, within remindBefore of it) or an overdue notice (once per due
// date, then every overdueRepeat).
func drillNotice(due DrillDue, st Account, remindBefore time.Duration, now time.Time) (remind, overdue bool) {
	if due.NextDue.IsZero() {
		return false, false
	}
	if due.Overdue {
		return false, !st.OverdueFor.Equal(due.NextDue) || now.Sub(st.LastOverdueNotice) >= overdueRepeat
	}
	return !now.Before(due.NextDue.Add(-remindBefore)) && !st.RemindedFor.Equal(due.NextDue), false
}

func (s *Service) drillIndex(ctx context.Context) ([]drillRef, error) {
	var idx []drillRef
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		idx, err = loadDrillIndex(tx)
		return err
	})
	return idx, err
}
