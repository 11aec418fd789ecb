package breakglass

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
)

// Drill step names, in order.
const (
	stepUnseal     = "unseal"
	stepCredential = "credential"
	stepLogin      = "login"
	stepProbe      = "probe"
	stepRotate     = "rotate"
	stepVerify     = "verify"
	stepReseal     = "reseal"
)

// StartDrill starts a drill of an account: an unseal in drill mode that
// needs the same confirmations as a real one (the starting custodian's
// counts as the first). Once open, the broker itself logs in with the
// credential, runs the probe, rotates, verifies and reseals, recording
// each step.
func (s *Service) StartDrill(ctx context.Context, actor, name string, f Factor) (Drill, error) {
	now := s.now().UTC()
	d := Drill{ID: broker.NewID("drl"), Account: name, Quarter: schedule.Quarter(now), StartedBy: actor,
		StartedAt: now, Outcome: DrillRunning, Steps: []Step{}}
	if a, ok := s.cfg.FindBreakGlass(name); ok {
		d.Target, d.Probe = a.Target, a.Drill.Probe
	}
	u, err := s.unseal(ctx, actor, UnsealRequest{Account: name, Reason: "break-glass drill " + d.ID, Incident: d.ID, Factor: f}, &d)
	if err != nil {
		s.refused(ctx, actor, "breakglass.drill.start", name, err, map[string]any{"via": f.Via})
		return Drill{}, err
	}
	d.UnsealID = u.ID
	return d, nil
}

// GetDrill returns a drill's evidence to the account's custodians and
// security admins.
func (s *Service) GetDrill(ctx context.Context, actor, id string) (Drill, error) {
	d, err := s.drill(ctx, id)
	if err != nil {
		return Drill{}, err
	}
	a, ok := s.cfg.FindBreakGlass(d.Account)
	if (ok && !s.maySee(a, actor)) || (!ok && !s.dir.IsSecurityAdmin(actor)) {
		return Drill{}, forbidden("forbidden", "%s is not a custodian of %s", actor, d.Account)
	}
	return d, nil
}

func (s *Service) drill(ctx context.Context, id string) (Drill, error) {
	var d Drill
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		d, err = loadDrill(tx, id)
		return err
	})
	return d, err
}

// startDrillRun runs an opened drill in the background.
func (s *Service) startDrillRun(a *config.BreakGlassAccount, u Unseal) {
	if !s.acquire(a.Name) {
		s.log.Error("drill not run: account busy", "account", a.Name, "drill", u.Drill)
		return
	}
	s.wg.Go(func() {
		defer s.release(a.Name)
		s.runDrill(s.background(), a, u)
	})
}

// runDrill runs the open account's drill to the end. The caller holds the
// account.
func (s *Service) runDrill(ctx context.Context, a *config.BreakGlassAccount, u Unseal) {
	ctx = context.WithoutCancel(ctx)
	d, err := s.drill(ctx, u.Drill)
	if err != nil {
		s.log.Error("drill not run", "drill", u.Drill, "err", err)
		return
	}
	d.Participants = u.Custodians()
	d.Steps = append(d.Steps, Step{Name: stepUnseal, StartedAt: u.RequestedAt, EndedAt: u.OpenedAt, Outcome: StepOK,
		Detail: fmt.Sprintf("confirmed by %s (%d of %d)", strings.Join(d.Participants, ", "), len(u.Confirmations), u.Required)})
	s.saveDrillProgress(ctx, d)

	pctx, cancel := context.WithDeadline(ctx, u.OpenUntil)
	s.drillAccess(pctx, a, u, &d)
	cancel()
	s.saveDrillProgress(ctx, d)

	// Close and rotate, as any open account is at its end.
	start := s.now().UTC()
	var grant *broker.Grant
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		st, err := loadAccount(tx, a.Name, start)
		if err != nil {
			return err
		}
		if st.State != StateOpen || st.Unseal == nil || st.Unseal.ID != u.ID {
			return conflict("not_open", "%s is %s", a.Name, st.State)
		}
		if grant, err = s.beginRotateTx(ctx, tx, a, &st, "system", "drill "+d.ID+" finished", start); err != nil {
			return err
		}
		return saveAccount(tx, st)
	})
	if err != nil {
		d.Steps = append(d.Steps, Step{Name: stepRotate, StartedAt: start, EndedAt: s.now().UTC(), Outcome: StepFailed, Detail: err.Error()})
		s.finishDrill(ctx, a, d)
		return
	}
	if grant != nil {
		s.access.AnnounceGrant(ctx, *grant)
	}
	v, rerr := s.rotateHeld(ctx, a, "system")
	end := s.now().UTC()
	switch {
	case v.NotApplicable != "":
		d.Steps = append(d.Steps,
			Step{Name: stepRotate, StartedAt: start, EndedAt: start, Outcome: StepSkipped, Detail: v.NotApplicable},
			Step{Name: stepVerify, StartedAt: start, EndedAt: start, Outcome: StepSkipped, Detail: v.NotApplicable})
	case v.RotatedAt.IsZero():
		d.Steps = append(d.Steps, Step{Name: stepRotate, StartedAt: start, EndedAt: end, Outcome: StepFailed, Detail: errText(rerr)})
	default:
		d.Steps = append(d.Steps, Step{Name: stepRotate, StartedAt: start, EndedAt: v.RotatedAt, Outcome: StepOK,
			Detail: "Vault issued a new credential for " + v.Username})
		vs := Step{Name: stepVerify, StartedAt: v.RotatedAt, EndedAt: v.VerifiedAt, Outcome: StepOK,
			Detail: fmt.Sprintf("old credential refused, new one accepted, %d leftover session(s) ended", v.Terminated)}
		if rerr != nil {
			vs.Outcome, vs.Detail = StepFailed, errText(rerr)
		}
		if vs.EndedAt.IsZero() {
			vs.EndedAt = end
		}
		d.Steps = append(d.Steps, vs)
	}
	rs := Step{Name: stepReseal, StartedAt: end, EndedAt: s.now().UTC(), Outcome: StepOK, Detail: "sealed"}
	if rerr != nil {
		rs.Outcome, rs.Detail = StepFailed, "not resealed: account is compromised-until-rotated"
	}
	d.Steps = append(d.Steps, rs)
	s.finishDrill(ctx, a, d)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// drillAccess is the part of a drill that proves access: read the
// credential from Vault, log in to the target and run the probe, recorded
// when the broker records. Each step is appended to d; the first failure
// ends it.
func (s *Service) drillAccess(ctx context.Context, a *config.BreakGlassAccount, u Unseal, d *Drill) {
	t, ok := s.cfg.FindTarget(a.Target)
	step := func(name string, fn func() (string, error)) bool {
		st := Step{Name: name, StartedAt: s.now().UTC()}
		detail, err := fn()
		st.EndedAt, st.Detail, st.Outcome = s.now().UTC(), detail, StepOK
		if err != nil {
			st.Outcome, st.Detail = StepFailed, err.Error()
		}
		d.Steps = append(d.Steps, st)
		return err == nil
	}
	if !ok {
		step(stepCredential, func() (string, error) { return "", fmt.Errorf("unknown target %q", a.Target) })
		return
	}
	switch a.Credential.Type {
	case config.BreakGlassDatabaseStatic:
		s.drillPostgres(ctx, a, t, d, step)
	case config.BreakGlassSSHCA:
		s.drillSSH(ctx, a, t, u, d, step)
	default:
		step(stepCredential, func() (string, error) {
			return "", fmt.Errorf("credential type %q cannot be drilled", a.Credential.Type)
		})
	}
}

type stepFunc func(name string, fn func() (string, error)) bool

func (s *Service) drillPostgres(ctx context.Context, a *config.BreakGlassAccount, t *config.Target, d *Drill, step stepFunc) {
	var user, pass string
	if !step(stepCredential, func() (string, error) {
		sc, err := s.vault.StaticCreds(ctx, d.StartedBy, a.Credential.VaultRole)
		user, pass = sc.Username, sc.Password
		return "read static credential " + a.Credential.VaultRole + " (" + sc.Username + ") from Vault", err
	}) {
		return
	}
	var c *pgconn.PgConn
	if !step(stepLogin, func() (string, error) {
		var err error
		if c, err = pgConnect(ctx, t, user, pass); err != nil {
			return "", fmt.Errorf("log in to %s as %s: %w", t.Address, user, err)
		}
		d.TimeToAccess = s.now().Sub(d.StartedAt)
		return "logged in to " + t.Address + " as " + user, nil
	}) {
		return
	}
	defer c.Close(context.WithoutCancel(ctx))
	step(stepProbe, func() (string, error) {
		rec, err := s.startRecording(ctx, a, d, "postgres", user, t.Postgres.Database)
		if err != nil {
			return "", err
		}
		_ = rec.Query(d.Probe)
		tags, err := pgExec(ctx, c, d.Probe)
		return s.endRecording(d, rec, fmt.Sprintf("ran %q: %s", d.Probe, tags), err)
	})
}

func (s *Service) drillSSH(ctx context.Context, a *config.BreakGlassAccount, t *config.Target, u Unseal, d *Drill, step stepFunc) {
	// The certificate is signed for a grant that exists only for the
	// drill: the account's role, until the open window ends.
	g := broker.Grant{ID: d.ID, User: d.StartedBy, Target: a.Target, Role: a.Role, StartsAt: u.OpenedAt.Add(-time.Second),
		EndsAt: u.OpenUntil, Approvers: u.Custodians(), Reason: u.Reason, State: broker.GrantActive, BreakGlass: a.Name}
	var cert creds.SSHCert
	if !step(stepCredential, func() (string, error) {
		var err error
		cert, err = s.vault.SSHForSession(ctx, g, broker.NewID("ses"))
		return "Vault signed a certificate for " + cert.Login + " (" + cert.KeyID + ")", err
	}) {
		return
	}
	var client *ssh.Client
	if !step(stepLogin, func() (string, error) {
		var err error
		if client, err = sshDial(ctx, t, cert); err != nil {
			return "", fmt.Errorf("log in to %s as %s: %w", t.Address, cert.Login, err)
		}
		d.TimeToAccess = s.now().Sub(d.StartedAt)
		return "logged in to " + t.Address + " as " + cert.Login, nil
	}) {
		return
	}
	defer client.Close()
	step(stepProbe, func() (string, error) {
		rec, err := s.startRecording(ctx, a, d, "ssh", cert.Login, "")
		if err != nil {
			return "", err
		}
		_ = rec.Output(0, []byte("$ "+d.Probe+"\r\n"))
		out, err := sshRun(ctx, client, d.Probe)
		_ = rec.Output(0, out)
		if err != nil {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return s.endRecording(d, rec, fmt.Sprintf("ran %q: exit 0", d.Probe), err)
	})
}

// noRecording stands in when the broker does not record drills.
type noRecording struct{}

func (noRecording) Query(string) error          { return nil }
func (noRecording) Output(uint32, []byte) error { return nil }
func (noRecording) Note(string, string) error   { return nil }
func (noRecording) Close() error                { return nil }

// startRecording records the probe session, fail-closed: a drill whose
// probe cannot be recorded fails.
func (s *Service) startRecording(ctx context.Context, a *config.BreakGlassAccount, d *Drill, protocol, upstream, db string) (Recording, error) {
	if s.record == nil {
		return noRecording{}, nil
	}
	id := broker.NewID("ses")
	rec, err := s.record(ctx, ProbeSession{SessionID: id, DrillID: d.ID, StartedBy: d.StartedBy, Target: a.Target, Role: a.Role,
		Protocol: protocol, Account: upstream, Database: db, Participants: d.Participants})
	if err != nil {
		return nil, fmt.Errorf("recording unavailable: %w", err)
	}
	d.RecordingID = id
	return rec, nil
}

func (s *Service) endRecording(d *Drill, rec Recording, ok string, cause error) (string, error) {
	note := "probe passed: " + ok
	if cause != nil {
		note = "probe failed: " + cause.Error()
	}
	_ = rec.Note("drill", note)
	if err := rec.Close(); err != nil && cause == nil {
		cause = fmt.Errorf("recording: %w", err)
	}
	if cause != nil {
		return "", cause
	}
	return ok, nil
}

// saveDrillProgress stores the drill as it stands, so a status query sees
// the steps done so far.
func (s *Service) saveDrillProgress(ctx context.Context, d Drill) {
	if err := s.store.Update(ctx, func(tx broker.Tx) error { return saveDrill(tx, d) }); err != nil {
		s.log.Error("drill progress not saved", "drill", d.ID, "err", err)
	}
}

// finishDrill decides the drill's outcome from its steps, stores it as
// evidence with its audit record and announces it.
func (s *Service) finishDrill(ctx context.Context, a *config.BreakGlassAccount, d Drill) {
	d.FinishedAt, d.Outcome, d.Reason = s.now().UTC(), DrillPassed, ""
	for _, st := range d.Steps {
		if st.Outcome == StepFailed {
			d.Outcome, d.Reason = DrillFailed, st.Name+": "+st.Detail
			break
		}
	}
	s.storeFinished(ctx, a, d)
}

// failDrill fails a drill that did not get to run its steps.
func (s *Service) failDrill(ctx context.Context, id, reason string) {
	d, err := s.drill(ctx, id)
	if err != nil || d.Outcome != DrillRunning {
		return
	}
	a, ok := s.cfg.FindBreakGlass(d.Account)
	if !ok {
		return
	}
	d.FinishedAt, d.Outcome, d.Reason = s.now().UTC(), DrillFailed, reason
	s.storeFinished(ctx, a, d)
}

func (s *Service) storeFinished(ctx context.Context, a *config.BreakGlassAccount, d Drill) {
	outcome := broker.OutcomeSuccess
	if d.Outcome != DrillPassed {
		outcome = broker.OutcomeError
	}
	var idx []drillRef
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		if err := saveDrill(tx, d); err != nil {
			return err
		}
		st, err := loadAccount(tx, a.Name, d.FinishedAt)
		if err != nil {
			return err
		}
		st.LastDrill = d.ID
		if d.Outcome == DrillPassed {
			st.LastDrillOK = d.FinishedAt
		}
		if err := saveAccount(tx, st); err != nil {
			return err
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: d.StartedBy, Action: "breakglass.drill.finish", Target: a.Target,
			Outcome: outcome, Reason: d.Reason, Details: map[string]any{"account": a.Name, "drill": d.ID, "outcome": d.Outcome,
				"participants": d.Participants, "time_to_access": d.TimeToAccess.String(), "recording_id": d.RecordingID,
				"steps": d.Steps}}); err != nil {
			return err
		}
		idx, err = loadDrillIndex(tx)
		return err
	})
	if err != nil {
		s.log.Error("drill result not stored", "drill", d.ID, "err", err)
		return
	}
	s.metrics.drillCounts(idx, schedule.Quarter(s.now()))
	total := d.FinishedAt.Sub(d.StartedAt).Round(time.Millisecond)
	if d.Outcome == DrillPassed {
		s.log.Info("break-glass drill passed", "account", a.Name, "drill", d.ID, "time_to_access", d.TimeToAccess)
		s.announce(ctx, fmt.Sprintf("break-glass drill %s of %s PASSED in %s (time to access %s; participants %s)",
			d.ID, a.Name, total, d.TimeToAccess.Round(time.Millisecond), strings.Join(d.Participants, ", ")))
		return
	}
	s.log.Warn("break-glass drill failed", "account", a.Name, "drill", d.ID, "reason", d.Reason)
	s.announce(ctx, fmt.Sprintf("break-glass drill %s of %s FAILED: %s", d.ID, a.Name, d.Reason))
}

// due is the account's drill schedule as of now: the next drill is due at
// the first scheduled time after the last successful drill (or, before
// any, after the broker first knew the account).
func (s *Service) due(name string, st Account, now time.Time) DrillDue {
	sch, ok := s.schedule[name]
	if !ok {
		return DrillDue{}
	}
	base := st.LastDrillOK
	if base.IsZero() {
		base = st.FirstSeen
	}
	if base.IsZero() {
		base = now
	}
	next := sch.Next(base)
	return DrillDue{Schedule: sch.String(), NextDue: next, Overdue: !next.IsZero() && now.After(next)}
}
