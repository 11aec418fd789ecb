package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/clock"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/metrics"
)

// Kind is why the broker ended a session.
type Kind uint8

// Kinds of Cause.
const (
	// Revoked: the grant ended or was revoked, or security terminated
	// the session. The user sees "access revoked: REASON".
	Revoked Kind = iota + 1
	// Idle: nothing moved for the role's idle timeout.
	Idle
	// RecordingFailed: a fail-closed recording stopped accepting events.
	RecordingFailed
	// Shutdown: the broker is shutting down.
	Shutdown
)

// Cause is why the broker ended a session: the cause of the session's
// context. Each proxy shows it to the user in its wire's terms.
type Cause struct {
	Kind Kind
	// By is who ended it: "system" or "security".
	By string
	// Reason is recorded and audited; for Revoked it is also shown.
	Reason string
	// IdleFor is the idle timeout that ended an Idle session.
	IdleFor time.Duration
}

func (c *Cause) Error() string { return c.Reason }

// State is the recording's end state: terminated for a revocation or an
// idle timeout, interrupted for a failure or a shutdown.
func (c *Cause) State() string {
	if c.Kind == Revoked || c.Kind == Idle {
		return "terminated"
	}
	return "interrupted"
}

// AsCause returns the broker's cause in err's chain, if any.
func AsCause(err error) (*Cause, bool) {
	var c *Cause
	ok := errors.As(err, &c)
	return c, ok
}

// Start is what a proxy knows of a session once its grant is found.
type Start struct {
	Grant  broker.Grant
	Target *config.Target
	// Role is the grant's role on the target; nil when not configured.
	Role       *config.Role
	Account    string
	Database   string
	ClientAddr string
	// StartDetails are added to the session.start audit record's details
	// (e.g. the masking in effect). Default: none.
	StartDetails map[string]any
}

// Session is one tracked session: its context, timers, recording and
// audit records. Its fields are set by Open and read-only afterwards,
// except Account, which SetAccount may set before StartRecording.
type Session struct {
	c *Core
	Start
	ID        string
	StartedAt time.Time

	ctx    context.Context
	cancel context.CancelCauseFunc

	// lastActive is when bytes last moved, in Unix nanoseconds.
	lastActive atomic.Int64
	events     atomic.Int64
	rec        Recording
	metrics    *metrics.Session
	failed     atomic.Bool

	// endMu guards endGrant: an approved extension moves the end while
	// the session runs.
	endMu    sync.Mutex
	endGrant *broker.Grant // the grant whose end the watch keeps; nil before Admit
	endWake  chan struct{} // tells the watch the end moved

	stopped  chan struct{}
	stopOnce sync.Once
	ended    sync.Once
}

// Open tracks a new session from the moment its grant is known, so that a
// revocation ends it even while its upstream login is in flight. Its
// context ends with the Core. It fails with ErrClosed once Close began.
func (c *Core) Open(st Start) (*Session, error) {
	s := &Session{c: c, Start: st, ID: broker.NewID("ses"), StartedAt: time.Now().UTC(),
		rec: nopRecording{}, stopped: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancelCause(c.ctx)
	s.Touch()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		s.cancel(ErrClosed)
		return nil, fmt.Errorf("%s proxy: %w", c.cfg.Protocol, ErrClosed)
	}
	c.sessions[s.ID] = s
	s.metrics = c.cfg.Metrics.SessionOpened(c.cfg.Protocol)
	return s, nil
}

// Context ends when the session ends; its cause says why.
func (s *Session) Context() context.Context { return s.ctx }

// End ends the session with cause; the first cause wins.
func (s *Session) End(cause error) { s.cancel(cause) }

// Cause is why the session ended, or nil while it runs.
func (s *Session) Cause() error { return context.Cause(s.ctx) }

// Touch notes that bytes moved, for the idle watcher.
func (s *Session) Touch() { s.lastActive.Store(time.Now().UnixNano()) }

// Relayed notes that n bytes moved in direction (metrics.ToTarget or
// metrics.ToClient): for the idle watcher and the relayed-bytes metric.
func (s *Session) Relayed(direction string, n int) {
	s.Touch()
	s.metrics.Relayed(direction, n)
}

// SetAccount names the target login once it is issued.
func (s *Session) SetAccount(account string) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.Account = account
}

// Info describes the session.
func (s *Session) Info() Info {
	return Info{ID: s.ID, GrantID: s.Grant.ID, User: s.Grant.User, Target: s.Grant.Target, Role: s.Grant.Role,
		Protocol: s.c.cfg.Protocol, Account: s.Account, Database: s.Database, ClientAddr: s.ClientAddr, StartedAt: s.StartedAt}
}

// terminate ends the session with a broker cause and audits it
// (session.terminate) when it is a termination rather than a failure.
func (s *Session) terminate(c *Cause) {
	if s.ctx.Err() != nil {
		return
	}
	s.cancel(c)
	if context.Cause(s.ctx) != error(c) || c.State() != "terminated" {
		return
	}
	s.c.audit(s.ctx, audit.Entry{Actor: c.By, Action: ActionTerminate, Target: s.Grant.Target, Outcome: broker.OutcomeSuccess,
		Reason: c.Reason, Details: s.details(map[string]any{"user": s.Grant.User})})
}

// Stopped tells Terminate that nothing more of the session is relayed.
func (s *Session) Stopped() { s.stopOnce.Do(func() { close(s.stopped) }) }

func (s *Session) waitStopped() {
	t := time.NewTimer(stopWait)
	defer t.Stop()
	select {
	case <-s.stopped:
	case <-t.C:
	}
}

// Admit lets the session run once its upstream login and recording are in
// place: it re-checks the grant by its ID (a revocation announced before
// Open reached no session; another grant for the same role does not keep
// this one), starts the grant-end timer, the idle watcher and the watch on
// the recording, and audits session.start. It returns the session's cause
// when the session already ended; the proxy then refuses it with Refuse.
func (s *Session) Admit() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.c.cfg.LoginTimeout)
	g, err := s.c.cfg.Grants.GetGrant(ctx, s.Grant.ID)
	cancel()
	switch {
	case s.ctx.Err() != nil:
	case err != nil:
		s.c.log.Warn("grant re-check failed; session refused", "session", s.ID, "grant", s.Grant.ID, "err", err)
		s.terminate(&Cause{Kind: Revoked, By: "system", Reason: "grant could not be checked"})
	case !s.c.cfg.Clock.Active(g):
		s.terminate(&Cause{Kind: Revoked, By: "system", Reason: grantEnded(g, s.c.cfg.Clock)})
	}
	if err := s.Cause(); err != nil {
		return err
	}
	s.startGrantEnd(g)
	if s.Role != nil && s.Role.IdleTimeout.D() > 0 {
		go s.watchIdle(s.Role.IdleTimeout.D())
	}
	go func() {
		select {
		case <-s.rec.Done():
			s.recordingFailed()
		case <-s.ctx.Done():
		}
	}()
	s.c.log.Info("session started", "session", s.ID, "grant", s.Grant.ID, "user", s.Grant.User, "target", s.Grant.Target,
		"account", s.Account, "database", s.Database, "client", s.ClientAddr)
	details := map[string]any{"account": s.Account, "database": s.Database, "client_addr": s.ClientAddr}
	for k, v := range s.StartDetails {
		if _, ok := details[k]; !ok {
			details[k] = v
		}
	}
	s.Audit(ActionStart, broker.OutcomeSuccess, "", details)
	return nil
}

// wallCheck bounds how long a step forward of the wall clock goes
// unnoticed by a session's grant-end watch.
const wallCheck = time.Second

// startGrantEnd starts the watch that ends the session when grant g is
// over.
func (s *Session) startGrantEnd(g broker.Grant) {
	s.endMu.Lock()
	s.endGrant, s.endWake = &g, make(chan struct{}, 1)
	s.endMu.Unlock()
	go s.watchGrantEnd()
}

// watchGrantEnd ends the session when its grant is over by the Clock's
// rule: at the grant's real length (a monotonic timer), or within
// wallCheck of the wall clock passing its end, whichever comes first. An
// extension (extendGrantEnd) moves the end on.
func (s *Session) watchGrantEnd() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.endWake:
		}
		s.endMu.Lock()
		g := *s.endGrant
		s.endMu.Unlock()
		left := s.c.cfg.Clock.Left(s.c.cfg.Clock.Grant(g))
		if left <= 0 {
			s.terminate(&Cause{Kind: Revoked, By: "system", Reason: "grant expired"})
			return
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(min(left, wallCheck))
	}
}

// extendGrantEnd moves a running session's end to g's end when that is
// later (an approved extension); an earlier end never replaces a later
// one here, since revocations end sessions through their events. A
// session not admitted yet reads its grant at admission.
func (s *Session) extendGrantEnd(g broker.Grant) bool {
	s.endMu.Lock()
	armed := s.endGrant != nil && g.EffectiveEnd().After(s.endGrant.EffectiveEnd())
	if armed {
		s.endGrant = &g
	}
	wake := s.endWake
	s.endMu.Unlock()
	if armed {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	return armed
}

// grantEnded is the reason shown for a grant found ended at admission.
func grantEnded(g broker.Grant, clk *clock.Clock) string {
	switch {
	case g.State == broker.GrantRevoked && g.RevokeReason != "":
		return "grant revoked: " + g.RevokeReason
	case g.State == broker.GrantRevoked:
		return "grant revoked"
	case g.State == broker.GrantActive && !clk.Started(clk.Grant(g)):
		return "grant not yet active"
	default:
		return "grant expired"
	}
}

// watchIdle ends the session once nothing moved for idle.
func (s *Session) watchIdle(idle time.Duration) {
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		since := time.Since(time.Unix(0, s.lastActive.Load()))
		if since >= idle {
			s.terminate(&Cause{Kind: Idle, By: "system", Reason: fmt.Sprintf("idle for %s", idle), IdleFor: idle})
			return
		}
		t.Reset(idle - since)
	}
}

// Refuse ends a session that never ran: its recording (if started) ends
// as terminated, session.refused is audited and the session is untracked.
// outcome is broker.OutcomeDenied, or OutcomeError when the broker or the
// target failed; reason is what the user was told; details add protocol
// specifics.
func (s *Session) Refuse(outcome, reason string, details map[string]any) {
	s.End(errors.New(reason))
	if err := s.rec.Terminate("system", reason); err != nil {
		s.c.log.Warn("recording of a refused session not closed", "session", s.ID, "err", err)
	}
	s.c.Refused(s.ctx, Refusal{User: s.Grant.User, Target: s.Grant.Target, Outcome: outcome, Reason: reason,
		Details: s.refusedDetails(details)})
	s.untrack()
}

// End describes how a session ended, for its recording and audit record.
type End struct {
	// State is closed, terminated or interrupted.
	State string
	// By is who ended it: client, target, system, security or broker.
	By     string
	Reason string
	// Details add protocol specifics (bytes each way).
	Details map[string]any
}

// Finish records the session's end on its recording, untracks the
// session and audits session.end. A recording that did not close cleanly
// makes the outcome an error.
func (s *Session) Finish(e End) {
	s.End(errors.New("session finished"))
	var recErr error
	if e.State == "closed" {
		recErr = s.rec.Close()
	} else {
		recErr = s.rec.Terminate(e.By, e.Reason)
	}
	s.untrack()
	outcome := broker.OutcomeSuccess
	if recErr != nil || e.State == "interrupted" {
		outcome = broker.OutcomeError
	}
	attrs := []any{"session", s.ID, "user", s.Grant.User, "target", s.Grant.Target, "state", e.State, "by", e.By,
		"reason", e.Reason, "events", s.events.Load()}
	if recErr != nil {
		s.c.log.Error("session ended; recording incomplete", append(attrs, "recording_err", recErr)...)
	} else {
		s.c.log.Info("session ended", attrs...)
	}
	d := map[string]any{"state": e.State, "by": e.By}
	maps.Copy(d, e.Details)
	s.Audit(ActionEnd, outcome, e.Reason, d)
}

func (s *Session) untrack() {
	s.ended.Do(func() {
		s.c.mu.Lock()
		if s.c.sessions[s.ID] == s {
			delete(s.c.sessions, s.ID)
		}
		s.c.mu.Unlock()
		s.metrics.Closed()
		s.Stopped()
	})
}

// Audit appends a protocol's own record about the session (ssh.forward,
// ssh.refuse), with the user as actor and the session's detail keys.
func (s *Session) Audit(action, outcome, reason string, details map[string]any) {
	s.c.audit(s.ctx, audit.Entry{Actor: s.Grant.User, Action: action, Target: s.Grant.Target, Outcome: outcome,
		Reason: reason, Details: s.details(details)})
}

// details adds the keys every session record carries.
func (s *Session) details(d map[string]any) map[string]any {
	d["protocol"] = s.c.cfg.Protocol
	d["session_id"] = s.ID
	d["grant_id"] = s.Grant.ID
	maps.DeleteFunc(d, func(_ string, v any) bool { return v == "" })
	return d
}
