package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// RevokeGrant revokes every lease issued for the grant (in this run or an
// earlier one) and refuses to issue for it again. Vault's revoke runs the
// database role's revocation statements, which end the login's backends
// (pg_terminate_backend) before dropping it, so nothing stays connected.
// Leases that could not be revoked stay recorded and are retried by Run.
func (i *Issuer) RevokeGrant(ctx context.Context, grantID, reason string) error {
	i.mu.Lock()
	if _, ok := i.ended[grantID]; !ok {
		i.ended[grantID] = i.now()
	}
	askedAt := i.ended[grantID]
	i.mu.Unlock()
	gc := i.entry(grantID)
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if err := i.load(ctx); err != nil {
		return fmt.Errorf("creds: revoke grant %s: %w", grantID, err)
	}
	tokens := map[string]string{}
	if gc.shared != nil {
		tokens[gc.shared.lease.LeaseID] = gc.shared.token
	}
	for _, s := range gc.sessions {
		tokens[s.lease.LeaseID] = s.token
	}
	var errs []error
	var done []string
	for _, r := range i.records(func(r leaseRecord) bool { return r.GrantID == grantID }) {
		if err := i.revokeLease(ctx, r, reason, askedAt); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, r.LeaseID)
		if tok := tokens[r.LeaseID]; tok != "" {
			i.c.revokeSelf(ctx, tok)
		}
	}
	if len(errs) == 0 {
		gc.shared, gc.sessions = nil, map[string]*issued{}
		i.mu.Lock()
		delete(i.grants, grantID) // i.ended keeps refusing it
		i.mu.Unlock()
	}
	if err := i.drop(ctx, done...); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("creds: revoke grant %s: %w", grantID, err)
	}
	return nil
}

// EndSession revokes the session's own login when it had one (per_session
// roles); per-grant logins live on until the grant ends.
func (i *Issuer) EndSession(ctx context.Context, grantID, sessionID string) error {
	return i.endSession(ctx, grantID, sessionID, time.Time{})
}

// endSession is EndSession; endedAt, when set, is when the session ended,
// recorded as the revocation's requested_at.
func (i *Issuer) endSession(ctx context.Context, grantID, sessionID string, endedAt time.Time) error {
	if sessionID == "" {
		return nil
	}
	gc := i.entry(grantID)
	gc.mu.Lock()
	defer gc.mu.Unlock()
	iss := gc.sessions[sessionID]
	recs := i.records(func(r leaseRecord) bool { return r.GrantID == grantID && r.SessionID == sessionID })
	var errs []error
	var done []string
	for _, r := range recs {
		if err := i.revokeLease(ctx, r, "session ended", endedAt); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, r.LeaseID)
	}
	if iss != nil && len(errs) == 0 {
		i.c.revokeSelf(ctx, iss.token)
		delete(gc.sessions, sessionID)
	}
	if err := i.drop(ctx, done...); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("creds: end session %s: %w", sessionID, err)
	}
	return nil
}

// revokeIssued revokes one issued login whose grant goes on (a replaced
// shared login, or an issue that failed half way). Errors are logged: the
// record stays and the sweep retries at the grant's end.
func (i *Issuer) revokeIssued(ctx context.Context, grantID string, iss *issued, reason string) {
	r := leaseRecord{LeaseID: iss.lease.LeaseID, Kind: "postgres", GrantID: grantID,
		SessionID: iss.lease.SessionID, Username: iss.lease.Username}
	i.mu.Lock()
	if rec, ok := i.index.leases[r.LeaseID]; ok {
		r = rec
	}
	i.mu.Unlock()
	if err := i.revokeLease(ctx, r, reason, time.Time{}); err != nil {
		return
	}
	i.c.revokeSelf(ctx, iss.token)
	if err := i.drop(ctx, r.LeaseID); err != nil {
		i.log.Error("lease index not updated", "lease_id", r.LeaseID, "err", err)
	}
}

// revokeLease revokes one lease synchronously and audits the outcome. A
// lease Vault no longer knows (expired, revoked elsewhere) counts as
// revoked. askedAt, when set, is when the revocation was first asked for
// (the grant revoked or ended, or the session over): a revocation applied
// later (Vault was unreachable, so it was queued and retried; the broker
// was killed) says so in the record's requested_at and delay_ms.
func (i *Issuer) revokeLease(ctx context.Context, r leaseRecord, reason string, askedAt time.Time) error {
	_, err := i.c.write(ctx, "sys/leases/revoke/"+r.LeaseID, nil)
	var es *ErrStatus
	if errors.As(err, &es) && es.Status == http.StatusBadRequest && strings.Contains(strings.Join(es.Errors, " "), "invalid lease") {
		err = nil
	}
	outcome, why := broker.OutcomeSuccess, reason
	if err != nil {
		outcome, why = broker.OutcomeError, reason+": "+err.Error()
	}
	details := map[string]any{"kind": r.Kind, "grant_id": r.GrantID, "session_id": r.SessionID,
		"lease_id": r.LeaseID, "username": r.Username}
	if !askedAt.IsZero() {
		details["requested_at"] = askedAt.UTC().Format(time.RFC3339Nano)
		details["delay_ms"] = max(i.now().Sub(askedAt), 0).Milliseconds()
	}
	if _, aerr := i.audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: "system", Action: "creds.revoke",
		Target: r.Target, Outcome: outcome, Reason: why, Details: details,
	}); aerr != nil {
		i.log.Error("audit creds.revoke", "lease_id", r.LeaseID, "err", aerr)
	}
	if err != nil {
		i.log.Error("lease not revoked", "grant_id", r.GrantID, "lease_id", r.LeaseID, "err", err)
		return err
	}
	i.log.Info("lease revoked", "grant_id", r.GrantID, "session_id", r.SessionID, "lease_id", r.LeaseID,
		"username", r.Username, "reason", reason)
	return nil
}

// Run revokes leases as grants end, until ctx ends: first every recorded
// lease whose grant is no longer active (leases a previous run left
// behind), then at once on each revoke or expire event from the store,
// and, as a backstop, once a lease's grant end has passed unless the store
// says the grant was extended. An active event (an extension) renews the
// grant's logins to its new end (ExtendGrant). Failed
// revocations are retried with backoff. The Client's own Run keeps the
// token alive and is started separately.
func (i *Issuer) Run(ctx context.Context) error {
	if i.store == nil {
		return errors.New("creds: run: no store")
	}
	events := i.store.GrantEvents(ctx) // subscribe before the first sweep so nothing falls between
	r := &revoker{i: i, retryAt: map[string]time.Time{}, failures: map[string]int{}, busy: map[string]bool{},
		pending: map[string]string{}}
	defer r.wg.Wait()
	for ctx.Err() == nil {
		if err := i.load(ctx); err == nil {
			break
		} else {
			i.log.Error("lease index unreadable; retrying", "err", err)
		}
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
	r.sweep(ctx, true)
	tick := time.NewTicker(i.sweepEvery)
	defer tick.Stop()
	lastStoreCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if ev.Resync {
				// Events were missed: check every lease's grant now.
				lastStoreCheck = time.Now()
				r.sweep(ctx, true)
				continue
			}
			if ev.State == broker.GrantActive && ev.GrantID != "" {
				r.extend(ctx, ev.GrantID)
				continue
			}
			if ev.State == broker.GrantRevoked || ev.State == broker.GrantExpired {
				reason := "grant " + string(ev.State)
				if ev.Reason != "" {
					reason += ": " + ev.Reason
				}
				r.start(ctx, ev.GrantID, reason, true)
			}
		case <-tick.C:
			checkStore := time.Since(lastStoreCheck) > storeCheckEvery
			if checkStore {
				lastStoreCheck = time.Now()
			}
			r.sweep(ctx, checkStore)
		}
	}
}

// storeCheckEvery is how often the sweep reads the store: leases other
// replicas recorded, grants that ended without an event reaching us, and
// per-session logins whose session is over without this process ending it
// (a broker killed mid-session: its recorder closes the session as
// interrupted when it starts again).
const storeCheckEvery = 10 * time.Second

// proxiesFirst is how long a revocation announced by a grant event waits
// before it reaches Vault. Every broker's proxies end the grant's sessions
// on the same event, each with its reason ("access revoked: ..."); Vault's
// revocation ends the login's backends, and without the wait a replica
// revoking a lease another replica's session uses could end that session
// first, with the database's words instead of the broker's. The login is
// unusable meanwhile: credentials never leave the broker, and the grant
// admits no new session.
const proxiesFirst = 500 * time.Millisecond

// revoker runs revocations in the background, one at a time per grant,
// backing off after failures.
type revoker struct {
	i        *Issuer
	wg       sync.WaitGroup
	mu       sync.Mutex
	busy     map[string]bool
	retryAt  map[string]time.Time
	failures map[string]int
	// pending holds the reason of each grant whose revocation failed, so
	// the sweep retries it once its backoff has passed even when the
	// grant's recorded end is still ahead (a revocation queued while Vault
	// was unreachable).
	pending map[string]string
}

// sweep starts revocations for grants with recorded leases that have
// ended: by their recorded end, or, with checkStore, by the store's view
// of the grant.
func (r *revoker) sweep(ctx context.Context, checkStore bool) {
	now := r.i.now()
	if checkStore {
		// Pick up leases other replicas recorded.
		if err := r.i.load(ctx); err != nil {
			r.i.log.Warn("lease index unreadable", "err", err)
		}
		r.i.mu.Lock()
		for id, at := range r.i.ended {
			if now.Sub(at) > time.Hour {
				delete(r.i.ended, id)
			}
		}
		r.i.mu.Unlock()
	}
	grants := map[string]string{}
	var perSession []leaseRecord
	for _, rec := range r.i.records(func(leaseRecord) bool { return true }) {
		if !rec.GrantEnd.After(now) {
			grants[rec.GrantID] = "grant ended"
		} else if checkStore {
			grants[rec.GrantID] = ""
			if rec.SessionID != "" {
				perSession = append(perSession, rec)
			}
		}
	}
	r.mu.Lock()
	for id, reason := range r.pending {
		if grants[id] == "" {
			grants[id] = reason
		}
	}
	r.mu.Unlock()
	for id, reason := range grants {
		if reason == "grant ended" {
			// Past the end on record: unless the grant was extended
			// (its event missed), which only the store knows.
			if g, err := r.getGrant(ctx, id); err == nil && g.State == broker.GrantActive && g.ActiveAt(now) {
				r.extend(ctx, id)
				continue
			}
		}
		if reason == "" {
			g, err := r.getGrant(ctx, id)
			switch {
			case errors.Is(err, broker.ErrNotFound):
				reason = "grant unknown to the store"
			case err != nil:
				r.i.log.Warn("grant lookup failed", "grant_id", id, "err", err)
				continue
			case !r.i.clock.Active(g):
				reason = "grant " + string(g.State)
			default:
				continue
			}
		}
		r.start(ctx, id, reason, false)
	}
	for _, rec := range perSession {
		r.endSessionIfOver(ctx, rec)
	}
}

// endSessionIfOver revokes a per-session login whose session the store
// lists as over (closed, interrupted or terminated) while its grant goes
// on. A session the store does not list yet is starting: it is left alone.
func (r *revoker) endSessionIfOver(ctx context.Context, rec leaseRecord) {
	var s broker.Session
	err := r.i.store.View(ctx, func(tx broker.Tx) error {
		var err error
		s, err = tx.GetSession(rec.SessionID)
		return err
	})
	if err != nil || s.State == broker.SessionLive {
		if err != nil && !errors.Is(err, broker.ErrNotFound) {
			r.i.log.Warn("session lookup failed", "session_id", rec.SessionID, "err", err)
		}
		return
	}
	key := "session:" + rec.SessionID
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[key] || time.Now().Before(r.retryAt[key]) {
		return
	}
	r.busy[key] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.i.endSession(ctx, rec.GrantID, rec.SessionID, s.EndedAt)
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.busy, key)
		if err != nil {
			r.retryAt[key] = time.Now().Add(storeCheckEvery)
			r.i.log.Warn("ending an over session's login failed; will retry", "session_id", rec.SessionID, "err", err)
			return
		}
		delete(r.retryAt, key)
	}()
}

func (r *revoker) getGrant(ctx context.Context, id string) (broker.Grant, error) {
	var g broker.Grant
	err := r.i.store.View(ctx, func(tx broker.Tx) error {
		var err error
		g, err = tx.GetGrant(id)
		return err
	})
	return g, err
}

// extend renews what this process issued for an extended grant, in the
// background, one at a time per grant.
func (r *revoker) extend(ctx context.Context, grantID string) {
	r.i.mu.Lock()
	_, held := r.i.grants[grantID]
	r.i.mu.Unlock()
	if !held {
		return // nothing issued here (a new grant's event, or another replica's)
	}
	key := "extend:" + grantID
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[key] || r.busy[grantID] {
		return
	}
	r.busy[key] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.busy, key)
			r.mu.Unlock()
		}()
		g, err := r.getGrant(ctx, grantID)
		if err != nil {
			r.i.log.Warn("grant lookup for an extension failed", "grant_id", grantID, "err", err)
			return
		}
		if err := r.i.ExtendGrant(ctx, g); err != nil {
			r.i.log.Warn("credentials not extended with their grant; its logins end at the old end", "grant_id", grantID, "err", err)
		}
	}()
}

// start revokes the grant in the background unless a revocation of it is
// running or backing off (an event overrides the backoff).
func (r *revoker) start(ctx context.Context, grantID, reason string, now bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[grantID] || (!now && time.Now().Before(r.retryAt[grantID])) {
		return
	}
	r.busy[grantID] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if now && !sleep(ctx, proxiesFirst) {
			r.mu.Lock()
			delete(r.busy, grantID)
			r.mu.Unlock()
			return
		}
		err := r.i.RevokeGrant(ctx, grantID, reason)
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.busy, grantID)
		if err == nil {
			delete(r.retryAt, grantID)
			delete(r.failures, grantID)
			delete(r.pending, grantID)
			return
		}
		r.pending[grantID] = reason
		r.failures[grantID]++
		wait := min(time.Duration(1<<min(r.failures[grantID], 6))*time.Second, time.Minute)
		r.retryAt[grantID] = time.Now().Add(wait)
		r.i.log.Warn("grant revocation failed; will retry", "grant_id", grantID, "retry_in", wait, "err", err)
	}()
}
