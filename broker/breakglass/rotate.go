package breakglass

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// staleClaim is how long a rotation claimed by another broker process may
// go without finishing before this one takes it over.
const staleClaim = 2 * time.Minute

// acquire marks the account busy in this process; false when it already
// is.
func (s *Service) acquire(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[name] {
		return false
	}
	s.busy[name] = true
	return true
}

func (s *Service) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.busy, name)
}

// rotateHeld rotates an account this process claimed and holds, verifies
// the result and reseals it, or flags it compromised-until-rotated.
func (s *Service) rotateHeld(ctx context.Context, a *config.BreakGlassAccount, actor string) (Verification, error) {
	ctx = context.WithoutCancel(ctx) // a rotation once begun is finished
	v, cause := s.rotateAndVerify(ctx, a, actor)
	now := s.now().UTC()
	var st Account
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		st, err = loadAccount(tx, a.Name, now)
		if err != nil {
			return err
		}
		if st.State != StateRotating || st.RotatingBy != s.instance {
			return conflict("rotating", "%s: rotation taken over by another broker", a.Name)
		}
		st.RotatingBy, st.RotatingSince = "", time.Time{}
		details := map[string]any{"account": a.Name, "reason": st.RotateReason, "verification": v}
		if cause == nil {
			st.State, st.LastRotation, st.LastVerification, st.LastRotationError = StateSealed, now, &v, ""
			st.CompromisedSince, st.LastAlert, st.Revealed, st.RotateReason = time.Time{}, time.Time{}, nil, ""
			if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.rotate", Target: a.Target,
				Outcome: broker.OutcomeSuccess, Details: details}); err != nil {
				return err
			}
			_, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "breakglass.reseal", Target: a.Target,
				Outcome: broker.OutcomeSuccess, Details: map[string]any{"account": a.Name}})
			if err != nil {
				return err
			}
			return saveAccount(tx, st)
		}
		st.State, st.LastRotationError, st.LastAlert = StateCompromised, cause.Error(), now
		if st.CompromisedSince.IsZero() {
			st.CompromisedSince = now
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "breakglass.rotate", Target: a.Target,
			Outcome: broker.OutcomeError, Reason: cause.Error(), Details: details}); err != nil {
			return err
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "breakglass.compromised", Target: a.Target,
			Outcome: broker.OutcomeError, Reason: cause.Error(), Details: map[string]any{"account": a.Name, "since": st.CompromisedSince}}); err != nil {
			return err
		}
		return saveAccount(tx, st)
	})
	if err != nil {
		s.log.Error("break-glass rotation not recorded", "account", a.Name, "err", err)
		return v, fmt.Errorf("breakglass: rotate %s: %w", a.Name, err)
	}
	s.metrics.state(a.Name, st.State)
	if cause != nil {
		s.log.Error("break-glass rotation failed: account compromised until rotated", "account", a.Name, "err", cause)
		s.announce(ctx, fmt.Sprintf(":rotating_light: break-glass account %s is COMPROMISED-UNTIL-ROTATED: rotation failed: %v. Retrying every %s; custodians: fix Vault or the target, then run custos breakglass close %s",
			a.Name, cause, a.AlertEvery.D(), a.Name))
		return v, fmt.Errorf("breakglass: rotate %s: %w", a.Name, cause)
	}
	s.log.Info("break-glass account rotated and resealed", "account", a.Name, "old_rejected", v.OldRejected, "new_accepted", v.NewAccepted)
	s.announce(ctx, fmt.Sprintf("break-glass account %s rotated and resealed: %s", a.Name, v.summary()))
	return v, nil
}

func (v Verification) summary() string {
	if v.NotApplicable != "" {
		return "nothing to rotate (" + v.NotApplicable + ")"
	}
	return fmt.Sprintf("new credential from Vault, old one refused by the target, new one accepted; %d leftover session(s) ended", v.Terminated)
}

// rotateAndVerify has Vault rotate the credential and proves the result
// against the target: the old credential is refused and the new one works.
func (s *Service) rotateAndVerify(ctx context.Context, a *config.BreakGlassAccount, actor string) (v Verification, err error) {
	v.At = s.now().UTC()
	switch a.Credential.Type {
	case config.BreakGlassSSHCA:
		v.NotApplicable = "no standing secret: Vault's SSH CA signs a short-lived certificate per session"
		v.RotatedAt, v.VerifiedAt = v.At, v.At
		return v, nil
	case config.BreakGlassDatabaseStatic:
	default:
		return v, fmt.Errorf("credential type %q cannot be rotated", a.Credential.Type)
	}
	t, ok := s.cfg.FindTarget(a.Target)
	if !ok {
		return v, fmt.Errorf("unknown target %q", a.Target)
	}
	before, err := s.vault.StaticCreds(ctx, actor, a.Credential.VaultRole)
	if err != nil {
		return v, fmt.Errorf("read current credential: %w", err)
	}
	v.Username = before.Username
	if err := s.vault.RotateStatic(ctx, actor, a.Credential.VaultRole); err != nil {
		return v, err
	}
	after, err := s.vault.StaticCreds(ctx, actor, a.Credential.VaultRole)
	if err != nil {
		return v, fmt.Errorf("read rotated credential: %w", err)
	}
	v.RotatedAt = s.now().UTC()
	if after.Password == before.Password {
		return v, errors.New("vault returned the same password after rotate-role")
	}
	v.Rotated = true
	defer func() { v.VerifiedAt = s.now().UTC() }()
	old, err := pgConnect(ctx, t, before.Username, before.Password)
	switch {
	case err == nil:
		old.Close(ctx)
		return v, errors.New("verify: the old password still logs in after rotation")
	case !pgRejected(err):
		return v, fmt.Errorf("verify: old password: the target did not refuse it as invalid: %w", err)
	}
	v.OldRejected = true
	c, err := pgConnect(ctx, t, after.Username, after.Password)
	if err != nil {
		return v, fmt.Errorf("verify: the new password from Vault does not log in: %w", err)
	}
	defer c.Close(ctx)
	v.NewAccepted = true
	// A password change leaves established sessions alone: end any the
	// account still has (its own role may signal them).
	rr := c.ExecParams(ctx, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()",
		nil, nil, nil, nil).Read()
	if rr.Err != nil {
		return v, fmt.Errorf("verify: end leftover sessions: %w", rr.Err)
	}
	if len(rr.Rows) == 1 && len(rr.Rows[0]) == 1 {
		fmt.Sscan(string(rr.Rows[0][0]), &v.Terminated)
	}
	return v, nil
}
