package breakglass

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
)

// UnsealRequest is a custodian's ask to open an account. The asking
// custodian's own confirmation is part of it.
type UnsealRequest struct {
	Account  string
	Reason   string
	Incident string
	Factor   Factor
}

// Unseal asks to open an account. The requester must be a custodian, give
// a reason and an incident id, and pass the second factor; their request
// counts as the first confirmation. An account needing one custodian
// (single_custodian) opens at once.
func (s *Service) Unseal(ctx context.Context, actor string, in UnsealRequest) (Unseal, error) {
	u, err := s.unseal(ctx, actor, in, nil)
	if err != nil {
		s.refused(ctx, actor, "breakglass.unseal", in.Account, err, map[string]any{"incident": in.Incident, "via": in.Factor.Via})
		return Unseal{}, err
	}
	return u, nil
}

// unseal records an unseal request; with d it is the unseal of that drill,
// stored in the same transaction.
func (s *Service) unseal(ctx context.Context, actor string, in UnsealRequest, d *Drill) (Unseal, error) {
	a, err := s.account(in.Account)
	if err != nil {
		return Unseal{}, err
	}
	if !s.mayUnseal(a, actor) {
		return Unseal{}, forbidden("not_custodian", "%s is not a custodian of %s", actor, a.Name)
	}
	in.Reason, in.Incident = strings.TrimSpace(in.Reason), strings.TrimSpace(in.Incident)
	if in.Reason == "" || in.Incident == "" {
		return Unseal{}, refuse(broker.KindInvalid, "reason_required", "an unseal needs a reason and an incident id (--reason, --incident)")
	}
	now := s.now().UTC()
	drillID := ""
	if d != nil {
		drillID = d.ID
	}
	u := Unseal{
		ID: broker.NewID("bgu"), Account: a.Name, RequestedBy: actor, Reason: in.Reason, Incident: in.Incident,
		Drill: drillID, Required: a.Required, SingleCustodian: a.SingleCustodian, RequestedAt: now,
		ExpiresAt: now.Add(a.ConfirmWithin.D()), Outcome: UnsealPending,
	}
	// Asking counts as the asker's confirmation: with signatures.unseal
	// required (and not a drill, which the broker runs) it is signed too.
	sig, factor, err := s.authenticate(ctx, a, &u, actor, in.Factor, true, d != nil)
	if err != nil {
		return Unseal{}, err
	}
	u.Confirmations = []Confirmation{{Custodian: actor, At: now, Via: via(in.Factor.Via), SecondFactor: factor, Signature: sig}}
	var grant *broker.Grant
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, a.Name, now)
		if err != nil {
			return err
		}
		if st.State != StateSealed {
			return conflict("not_sealed", "%s is %s, not sealed", a.Name, st.State)
		}
		st.State, st.Unseal = StateUnsealRequested, &u
		details := unsealDetails(a, &u)
		if sig != nil {
			details["signature"] = esign.Details(*sig)
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.unseal", Target: a.Target,
			Outcome: broker.OutcomeSuccess, Reason: u.Reason, Details: details}); err != nil {
			return err
		}
		if d != nil {
			d.UnsealID = u.ID
			if err := saveDrill(tx, *d); err != nil {
				return err
			}
			if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.drill.start", Target: a.Target,
				Outcome: broker.OutcomeSuccess, Details: map[string]any{"account": a.Name, "drill": d.ID, "unseal_id": u.ID, "probe": d.Probe}}); err != nil {
				return err
			}
		}
		if len(u.Confirmations) >= u.Required {
			if grant, err = s.openTx(ctx, tx, a, &st, now); err != nil {
				return err
			}
		}
		u = *st.Unseal
		return saveAccount(tx, st)
	})
	if err != nil {
		return Unseal{}, fmt.Errorf("breakglass: unseal %s: %w", a.Name, err)
	}
	kind := "unseal"
	if drillID != "" {
		kind = "drill unseal"
	}
	s.log.Warn("break-glass "+kind+" requested", "account", a.Name, "by", actor, "incident", u.Incident, "unseal_id", u.ID)
	if u.Outcome == UnsealPending {
		s.announceUnseal(ctx, fmt.Sprintf("%sbreak-glass %s of %s (%s on %s) requested by %s: %s [incident %s]. %d of %d custodians confirmed; others confirm in the web UI or with: custos breakglass confirm %s (expires %s)",
			loud(a), kind, a.Name, a.Role, a.Target, actor, u.Reason, u.Incident, len(u.Confirmations), u.Required, u.ID, u.ExpiresAt.Format(time.RFC3339)), u)
	}
	s.opened(ctx, a, u, grant)
	return u, nil
}

// Confirm adds a custodian's confirmation to a pending unseal. A custodian
// confirms at most once, and only with a fresh second factor; the M-th
// distinct confirmation opens the account.
func (s *Service) Confirm(ctx context.Context, actor, unsealID string, f Factor) (Unseal, error) {
	u, err := s.confirm(ctx, actor, unsealID, f)
	if err != nil {
		s.refused(ctx, actor, "breakglass.unseal.confirm", u.Account, err, map[string]any{"unseal_id": unsealID, "via": f.Via})
		return Unseal{}, err
	}
	return u, nil
}

// checkConfirm is the state check a confirmation passes before and, again,
// inside its transaction.
func checkConfirm(a *config.BreakGlassAccount, st Account, actor, unsealID string, now time.Time) error {
	u := st.Unseal
	switch {
	case u == nil || u.ID != unsealID:
		return conflict("not_pending", "unseal %s of %s is no longer pending (account is %s)", unsealID, a.Name, st.State)
	case st.State != StateUnsealRequested:
		return conflict("not_pending", "unseal %s of %s is no longer pending (account is %s)", unsealID, a.Name, st.State)
	case u.Confirmed(actor):
		return conflict("already_confirmed", "%s already confirmed unseal %s: %d distinct custodians must confirm", actor, unsealID, u.Required)
	case !now.Before(u.ExpiresAt):
		return conflict("unseal_expired", "unseal %s expired at %s", unsealID, u.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

func (s *Service) confirm(ctx context.Context, actor, unsealID string, f Factor) (Unseal, error) {
	a, st, err := s.findUnseal(ctx, unsealID)
	if err != nil {
		return Unseal{}, err
	}
	ref := Unseal{Account: a.Name}
	if !s.mayUnseal(a, actor) {
		return ref, forbidden("not_custodian", "%s is not a custodian of %s", actor, a.Name)
	}
	if err := checkConfirm(a, st, actor, unsealID, s.now().UTC()); err != nil {
		return ref, err
	}
	sig, factor, err := s.authenticate(ctx, a, st.Unseal, actor, f, false, false)
	if err != nil {
		return ref, err
	}
	var (
		u     Unseal
		grant *broker.Grant
	)
	now := s.now().UTC()
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, a.Name, now)
		if err != nil {
			return err
		}
		if err := checkConfirm(a, st, actor, unsealID, now); err != nil {
			return err
		}
		if sig != nil {
			if err := esign.Check(*sig, unsealRecord(a, st.Unseal)); err != nil {
				return err
			}
		}
		st.Unseal.Confirmations = append(st.Unseal.Confirmations, Confirmation{Custodian: actor, At: now, Via: via(f.Via), SecondFactor: factor, Signature: sig})
		details := unsealDetails(a, st.Unseal)
		if sig != nil {
			details["signature"] = esign.Details(*sig)
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.unseal.confirm", Target: a.Target,
			Outcome: broker.OutcomeSuccess, Details: details}); err != nil {
			return err
		}
		if len(st.Unseal.Confirmations) >= st.Unseal.Required {
			if grant, err = s.openTx(ctx, tx, a, &st, now); err != nil {
				return err
			}
		}
		u = *st.Unseal
		return saveAccount(tx, st)
	})
	if err != nil {
		return ref, fmt.Errorf("breakglass: confirm %s: %w", unsealID, err)
	}
	s.announce(ctx, fmt.Sprintf("break-glass unseal %s of %s confirmed by %s (%d of %d)", u.ID, a.Name, actor, len(u.Confirmations), u.Required))
	s.opened(ctx, a, u, grant)
	return u, nil
}

// findUnseal returns the account whose current unseal has the id.
func (s *Service) findUnseal(ctx context.Context, id string) (*config.BreakGlassAccount, Account, error) {
	now := s.now().UTC()
	var (
		found *config.BreakGlassAccount
		st    Account
	)
	err := s.store.View(ctx, func(tx broker.Tx) error {
		for i := range s.cfg.BreakGlass {
			a := &s.cfg.BreakGlass[i]
			cur, err := loadAccount(tx, a.Name, now)
			if err != nil {
				return err
			}
			if (cur.Unseal != nil && cur.Unseal.ID == id) || (cur.LastUnseal != nil && cur.LastUnseal.ID == id) {
				found, st = a, cur
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, Account{}, fmt.Errorf("breakglass: find unseal %s: %w", id, err)
	}
	if found == nil {
		return nil, Account{}, notFound("no unseal %s", id)
	}
	return found, st, nil
}

// openTx opens the account whose unseal has its confirmations: time-boxed,
// with a grant for the requester unless the unseal is a drill's.
func (s *Service) openTx(ctx context.Context, tx broker.Tx, a *config.BreakGlassAccount, st *Account, now time.Time) (*broker.Grant, error) {
	u := st.Unseal
	u.OpenedAt, u.OpenUntil, u.Outcome = now, now.Add(a.MaxOpen.D()), UnsealOpened
	st.State = StateOpen
	var grant *broker.Grant
	if u.Drill == "" {
		g, err := s.access.GrantBreakGlassTx(ctx, tx, access.BreakGlassGrant{Account: a.Name, UnsealID: u.ID,
			User: u.RequestedBy, Target: a.Target, Role: a.Role, Until: u.OpenUntil, Custodians: u.Custodians(),
			Reason: u.Reason, Incident: u.Incident})
		if err != nil {
			return nil, err
		}
		u.GrantID, grant = g.ID, &g
	}
	_, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "breakglass.open", Target: a.Target,
		Outcome: broker.OutcomeSuccess, Reason: u.Reason, Details: unsealDetails(a, u)})
	return grant, err
}

// opened announces a newly opened account after its transaction committed
// and starts the probe of a drill.
func (s *Service) opened(ctx context.Context, a *config.BreakGlassAccount, u Unseal, grant *broker.Grant) {
	if u.Outcome != UnsealOpened {
		return
	}
	if grant != nil {
		s.access.AnnounceGrant(ctx, *grant)
	}
	s.log.Warn("break-glass account open", "account", a.Name, "for", u.RequestedBy, "custodians", u.Custodians(),
		"until", u.OpenUntil, "grant_id", u.GrantID, "drill", u.Drill)
	what := fmt.Sprintf("open for %s through the broker until %s (grant %s)", u.RequestedBy, u.OpenUntil.Format(time.RFC3339), u.GrantID)
	if u.Drill != "" {
		what = fmt.Sprintf("open for drill %s until %s", u.Drill, u.OpenUntil.Format(time.RFC3339))
	}
	s.announce(ctx, fmt.Sprintf("%sbreak-glass account %s %s; confirmed by %s; incident %s",
		loud(a), a.Name, what, strings.Join(u.Custodians(), ", "), u.Incident))
	s.metrics.state(a.Name, StateOpen)
	if u.Drill != "" {
		s.startDrillRun(a, u)
	}
}

// Close closes an account: a pending unseal is cancelled; an open (or
// compromised) account has its grant revoked, is rotated, verified and
// resealed. Custodians and security admins may close.
func (s *Service) Close(ctx context.Context, actor, name, reason string) (AccountView, error) {
	v, err := s.close(ctx, actor, name, reason)
	if err != nil {
		s.refused(ctx, actor, "breakglass.close", name, err, nil)
		return AccountView{}, err
	}
	return v, nil
}

func (s *Service) close(ctx context.Context, actor, name, reason string) (AccountView, error) {
	a, err := s.account(name)
	if err != nil {
		return AccountView{}, err
	}
	if !s.maySee(a, actor) {
		return AccountView{}, forbidden("forbidden", "%s is not a custodian of %s", actor, name)
	}
	if reason == "" {
		reason = "closed by " + actor
	}
	// Hold the account from the claim to the end of the rotation, so the
	// scheduler does not start a second one.
	if !s.acquire(name) {
		return AccountView{}, conflict("busy", "%s is being rotated or drilled; try again when it is done", name)
	}
	defer s.release(name)
	now := s.now().UTC()
	var (
		rotate bool
		grant  *broker.Grant
		drill  string
	)
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, name, now)
		if err != nil {
			return err
		}
		switch st.State {
		case StateUnsealRequested:
			drill = st.Unseal.Drill
			if err := s.cancelTx(ctx, tx, a, &st, actor, UnsealCancelled, reason, now); err != nil {
				return err
			}
		case StateOpen:
			if grant, err = s.beginRotateTx(ctx, tx, a, &st, actor, reason, now); err != nil {
				return err
			}
			rotate = true
		case StateCompromised:
			if err := s.claimTx(ctx, tx, a, &st, actor, "retry by "+actor+": "+st.RotateReason, now); err != nil {
				return err
			}
			rotate = true
		case StateRotating:
			return conflict("rotating", "%s is being rotated", name)
		default:
			return conflict("not_open", "%s is sealed", name)
		}
		return saveAccount(tx, st)
	})
	if err != nil {
		return AccountView{}, fmt.Errorf("breakglass: close %s: %w", name, err)
	}
	if grant != nil {
		s.access.AnnounceGrant(ctx, *grant)
	}
	if drill != "" {
		s.failDrill(ctx, drill, "unseal cancelled by "+actor)
	}
	if rotate {
		s.announce(ctx, fmt.Sprintf("break-glass account %s closed by %s (%s); rotating", name, actor, reason))
		_, _ = s.rotateHeld(ctx, a, actor)
	} else {
		s.announce(ctx, fmt.Sprintf("break-glass unseal of %s cancelled by %s (%s); still sealed", name, actor, reason))
	}
	return s.Status(ctx, actor, name)
}

// cancelTx ends a pending unseal without opening: nothing was exposed, so
// nothing needs rotating.
func (s *Service) cancelTx(ctx context.Context, tx broker.Tx, a *config.BreakGlassAccount, st *Account, actor, outcome, reason string, now time.Time) error {
	u := st.Unseal
	u.Outcome, u.ClosedAt, u.ClosedBy, u.CloseReason = outcome, now, actor, reason
	st.State, st.LastUnseal, st.Unseal = StateSealed, u, nil
	action := "breakglass.unseal.cancel"
	if outcome == UnsealExpired {
		action = "breakglass.unseal.expire"
	}
	_, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: action, Target: a.Target,
		Outcome: broker.OutcomeSuccess, Reason: reason, Details: unsealDetails(a, u)})
	return err
}

// beginRotateTx closes an open account: its grant is revoked (ending live
// sessions) and the rotation is claimed for this process.
func (s *Service) beginRotateTx(ctx context.Context, tx broker.Tx, a *config.BreakGlassAccount, st *Account, actor, reason string, now time.Time) (*broker.Grant, error) {
	u := st.Unseal
	u.Outcome, u.ClosedAt, u.ClosedBy, u.CloseReason = UnsealClosed, now, actor, reason
	var grant *broker.Grant
	if u.GrantID != "" {
		g, err := s.access.EndBreakGlassTx(ctx, tx, u.GrantID, actor, "break-glass account closed: "+reason)
		if err != nil {
			return nil, err
		}
		grant = &g
	}
	st.LastUnseal, st.Unseal = u, nil
	if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.close", Target: a.Target,
		Outcome: broker.OutcomeSuccess, Reason: reason, Details: unsealDetails(a, u)}); err != nil {
		return nil, err
	}
	return grant, s.claimTx(ctx, tx, a, st, actor, "closed: "+reason, now)
}

// claimTx moves the account to rotating, claimed by this process.
func (s *Service) claimTx(ctx context.Context, tx broker.Tx, a *config.BreakGlassAccount, st *Account, actor, reason string, now time.Time) error {
	st.State, st.RotateReason, st.RotatingBy, st.RotatingSince = StateRotating, reason, s.instance, now
	_, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.rotate.start", Target: a.Target,
		Outcome: broker.OutcomeSuccess, Reason: reason, Details: map[string]any{"account": a.Name, "instance": s.instance}})
	return err
}

// Secret is a revealed credential.
type Secret struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Reveal shows the secret of an open account to a custodian who took part
// in its unseal, when the account allows it. The reveal needs a fresh
// second factor, is audited and announced, and the account is rotated
// when it closes.
func (s *Service) Reveal(ctx context.Context, actor, name string, f Factor) (Secret, error) {
	sec, err := s.reveal(ctx, actor, name, f)
	if err != nil {
		s.refused(ctx, actor, "breakglass.reveal", name, err, map[string]any{"via": f.Via})
		return Secret{}, err
	}
	return sec, nil
}

func (s *Service) reveal(ctx context.Context, actor, name string, f Factor) (Secret, error) {
	a, err := s.account(name)
	if err != nil {
		return Secret{}, err
	}
	if !a.Reveal {
		return Secret{}, forbidden("reveal_disabled", "%s does not allow revealing its secret: use it through the broker's proxies", name)
	}
	st, err := s.load(ctx, name)
	if err != nil {
		return Secret{}, err
	}
	if st.State != StateOpen || st.Unseal == nil || st.Unseal.Drill != "" {
		return Secret{}, conflict("not_open", "%s is %s, not open", name, st.State)
	}
	if !st.Unseal.Confirmed(actor) {
		return Secret{}, forbidden("not_participant", "only custodians who confirmed unseal %s may see the secret", st.Unseal.ID)
	}
	if _, err := s.checkFactor(ctx, a, actor, f); err != nil {
		return Secret{}, err
	}
	sc, err := s.vault.StaticCreds(ctx, actor, a.Credential.VaultRole)
	if err != nil {
		return Secret{}, fmt.Errorf("breakglass: reveal %s: %w", name, err)
	}
	now := s.now().UTC()
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, name, now)
		if err != nil {
			return err
		}
		if st.State != StateOpen {
			return conflict("not_open", "%s is %s, not open", name, st.State)
		}
		st.Revealed = append(st.Revealed, actor)
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.reveal", Target: a.Target,
			Outcome: broker.OutcomeSuccess, Reason: "secret shown; rotation at close",
			Details: map[string]any{"account": name, "unseal_id": st.Unseal.ID, "username": sc.Username, "via": via(f.Via)}}); err != nil {
			return err
		}
		return saveAccount(tx, st)
	})
	if err != nil {
		return Secret{}, fmt.Errorf("breakglass: reveal %s: %w", name, err)
	}
	s.log.Warn("break-glass secret revealed", "account", name, "to", actor)
	s.announce(ctx, fmt.Sprintf("break-glass account %s: secret revealed to %s; it will be rotated when the account closes", name, actor))
	return Secret{Username: sc.Username, Password: sc.Password}, nil
}

// ReportOutOfBand records what custodians say happened while the broker
// was down and the account was rotated as an out-of-band unseal.
func (s *Service) ReportOutOfBand(ctx context.Context, actor, name, incident, details string) (AccountView, error) {
	a, err := s.account(name)
	if err == nil && !s.mayUnseal(a, actor) {
		err = forbidden("not_custodian", "%s is not a custodian of %s", actor, name)
	}
	if err == nil && (strings.TrimSpace(incident) == "" || strings.TrimSpace(details) == "") {
		err = refuse(broker.KindInvalid, "reason_required", "give the incident id and what happened (--incident, --details)")
	}
	if err == nil {
		now := s.now().UTC()
		err = s.store.Update(ctx, func(tx broker.Tx) error {
			st, err := loadAccount(tx, name, now)
			if err != nil {
				return err
			}
			if st.OutOfBand == nil {
				return conflict("no_out_of_band", "%s has no out-of-band unseal to report on", name)
			}
			o := st.OutOfBand
			o.Incident, o.Details, o.ReportedBy, o.ReportedAt = incident, details, actor, now
			if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.unseal.out_of_band.report",
				Target: a.Target, Outcome: broker.OutcomeSuccess, Reason: details,
				Details: map[string]any{"account": name, "incident": incident, "down_from": o.DownFrom, "down_until": o.DownUntil}}); err != nil {
				return err
			}
			return saveAccount(tx, st)
		})
	}
	if err != nil {
		s.refused(ctx, actor, "breakglass.unseal.out_of_band.report", name, err, nil)
		return AccountView{}, err
	}
	s.announce(ctx, fmt.Sprintf("break-glass account %s: %s reported on the out-of-band unseal: incident %s", name, actor, incident))
	return s.Status(ctx, actor, name)
}

func (s *Service) load(ctx context.Context, name string) (Account, error) {
	var st Account
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		st, err = loadAccount(tx, name, s.now().UTC())
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("breakglass: load %s: %w", name, err)
	}
	return st, nil
}

func unsealDetails(a *config.BreakGlassAccount, u *Unseal) map[string]any {
	return map[string]any{"account": a.Name, "unseal_id": u.ID, "requested_by": u.RequestedBy, "incident": u.Incident,
		"drill": u.Drill, "custodians": u.Custodians(), "confirmations": len(u.Confirmations), "required": u.Required,
		"single_custodian": u.SingleCustodian, "expires_at": u.ExpiresAt, "open_until": u.OpenUntil,
		"grant_id": u.GrantID, "outcome": u.Outcome}
}

// loud prefixes notices about single-custodian accounts, which have no
// dual control.
func loud(a *config.BreakGlassAccount) string {
	if a.Required <= 1 {
		return ":rotating_light: SINGLE-CUSTODIAN "
	}
	return ""
}

func via(v string) string {
	switch v {
	case "web", "slack":
		return v
	}
	return "cli"
}
