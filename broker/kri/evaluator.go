package kri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// notifier posts to the security channel; the Slack integration
// implements it.
type notifier interface {
	SecurityNotice(ctx context.Context, text string) error
}

// verifier verifies a stored recording; the broker's wiring adapts the
// recorder. intact is the verdict, verdict its wording.
type verifier interface {
	Verify(ctx context.Context, sessionID string) (intact bool, verdict string, err error)
}

// EvaluatorOptions configure an Evaluator. Computer, Store and Audit are
// required; the limits and settings come from the Computer's config.
type EvaluatorOptions struct {
	Computer *Computer
	Store    broker.Store
	Audit    *audit.Log
	// Notifier gets a security notice per crossing. Default: none.
	Notifier notifier
	// Verifier verifies the recordings of ended sessions no one verified
	// yet, a few each round, and the verdict is audited as
	// session.verify. Default: none (only verifications people run
	// count).
	Verifier verifier
	// VerifyAfter is how long after a session ends the evaluator
	// verifies it, so the upload has finished. Default:
	// indicators.verify_after.
	VerifyAfter time.Duration
	// Registry gets the custos_kri_* gauges. Default: none.
	Registry *prometheus.Registry
	// PublicURL prefixes links in notices. Default: none.
	PublicURL string
	// Replica names this broker for the verifier's lease. Default: a
	// random id.
	Replica string
	Log     *slog.Logger
	Now     func() time.Time
}

// Evaluator evaluates the limits periodically and keeps the actions.
type Evaluator struct {
	o  EvaluatorOptions
	mu sync.Mutex
	// last is the last evaluation, for /metrics.
	last    []Indicator
	crossed map[string]bool
	open    int
}

// verifyBatch is how many recordings one round verifies at most.
const verifyBatch = 20

// NewEvaluator returns an Evaluator. A limit on an unknown indicator is
// an error.
func NewEvaluator(o EvaluatorOptions) (*Evaluator, error) {
	if o.Computer == nil || o.Store == nil || o.Audit == nil {
		return nil, errors.New("kri: evaluator: Computer, Store and Audit are required")
	}
	if err := CheckLimits(o.Computer.Config().Indicators.Limits); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Log = o.Log.With("component", "kri")
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Replica == "" {
		o.Replica = broker.NewID("rep")
	}
	e := &Evaluator{o: o, crossed: map[string]bool{}}
	if o.Registry != nil {
		if err := o.Registry.Register(collector{e}); err != nil {
			return nil, fmt.Errorf("kri: metrics: %w", err)
		}
	}
	return e, nil
}

func (e *Evaluator) now() time.Time { return e.o.Now().UTC() }

// config is the current config (a reload may swap it).
func (e *Evaluator) config() *config.Config { return e.o.Computer.Config() }

// Compute returns every indicator as of now.
func (e *Evaluator) Compute(ctx context.Context) ([]Indicator, error) {
	return e.o.Computer.Compute(ctx)
}

// One returns one indicator.
func (e *Evaluator) One(ctx context.Context, name string) (Indicator, error) {
	return e.o.Computer.One(ctx, name)
}

// Run evaluates every indicators.interval until ctx ends.
func (e *Evaluator) Run(ctx context.Context) {
	e.refreshOpen(ctx)
	// The interval is read once: a changed interval applies at restart.
	t := time.NewTicker(e.config().Indicators.IntervalOrDefault())
	defer t.Stop()
	for {
		if _, err := e.Evaluate(ctx); err != nil && ctx.Err() == nil {
			e.o.Log.Warn("indicators not evaluated", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// limitState is the durable state of one limit: whether it stands
// crossed. It is what makes a crossing alert once: only the evaluation
// that flips it (in one store transaction, which every replica's
// updates are serialized with) raises the alert.
type limitState struct {
	Crossed   bool      `json:"crossed"`
	Since     time.Time `json:"since,omitzero"`
	ActionID  string    `json:"action_id,omitempty"`
	ClearedAt time.Time `json:"cleared_at,omitzero"`
}

func limitKey(l config.Limit) string { return "kri/limit/" + l.String() }

// Crossing is a limit crossing one evaluation raised.
type Crossing struct {
	Limit  string
	Action Action
}

// Evaluate verifies a few unverified recordings (when this broker holds
// the verifier's lease), computes the indicators and raises each new
// crossing of a limit once: a kri.limit_crossed audit record and an
// action in the same transaction, then a security notice. A limit back
// within bounds is re-armed (kri.limit_cleared). It returns the
// crossings it raised.
func (e *Evaluator) Evaluate(ctx context.Context) ([]Crossing, error) {
	if e.o.Verifier != nil {
		if err := e.verifyRound(ctx); err != nil {
			e.o.Log.Warn("recordings not verified this round", "err", err)
		}
	}
	inds, err := e.o.Computer.Compute(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]Indicator{}
	for _, in := range inds {
		byName[in.Name] = in
	}
	var raised []Crossing
	crossed := map[string]bool{}
	var errs []error
	cfg := e.config()
	for _, l := range cfg.Indicators.Limits {
		ind, ok := byName[l.Indicator]
		if !ok {
			// Only a reload gets an unknown name past the start's check.
			e.o.Log.Warn("limit on an unknown indicator ignored", "limit", l.String())
			continue
		}
		if ind.Value == nil {
			continue // no data: neither crossed nor back within
		}
		now := l.Crossed(*ind.Value)
		crossed[l.String()] = now
		c, err := e.flip(ctx, cfg, l, ind, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c != nil {
			raised = append(raised, *c)
			e.notify(ctx, l, ind, c.Action)
		}
	}
	e.mu.Lock()
	e.last, e.crossed = inds, crossed
	e.mu.Unlock()
	e.refreshOpen(ctx)
	return raised, errors.Join(errs...)
}

// flip records a change of the limit's standing; it returns the crossing
// when this evaluation raised one.
func (e *Evaluator) flip(ctx context.Context, cfg *config.Config, l config.Limit, ind Indicator, crossed bool) (*Crossing, error) {
	// Most rounds change nothing: look before taking the write lock.
	var was limitState
	if err := e.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		was, err = getLimit(tx, l)
		return err
	}); err != nil {
		return nil, fmt.Errorf("kri: limit %s: %w", l.String(), err)
	}
	if was.Crossed == crossed {
		return nil, nil
	}
	var out *Crossing
	err := e.o.Store.Update(ctx, func(tx broker.Tx) error {
		out = nil
		// Again under the lock: another replica may have flipped it.
		st, err := getLimit(tx, l)
		if err != nil {
			return err
		}
		if st.Crossed == crossed {
			return nil
		}
		now := e.now()
		if !crossed {
			st = limitState{ClearedAt: now}
			if _, err := e.o.Audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: AuditLimitCleared,
				Target: l.Indicator, Outcome: broker.OutcomeSuccess,
				Details: map[string]any{"limit": l.String(), "value": *ind.Value}}); err != nil {
				return err
			}
			return putLimit(tx, l, st)
		}
		recs := ind.Records
		if len(recs) > maxActionRecords {
			recs = recs[:maxActionRecords]
		}
		a := Action{ID: broker.NewID("act"), Indicator: l.Indicator, Limit: l.String(), Value: *ind.Value, OpenedAt: now,
			Owner: cfg.OwnerOrDefault(), State: ActionOpen, Link: DashboardLink(l.Indicator), Records: recs}
		ids := make([]string, len(recs))
		for i, r := range recs {
			ids[i] = r.ID
		}
		rec, err := e.o.Audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: AuditLimitCrossed, Target: l.Indicator,
			Outcome: broker.OutcomeSuccess, Reason: fmt.Sprintf("%s (value %g)", l.String(), *ind.Value),
			Details: map[string]any{"limit": l.String(), "value": *ind.Value, "action_id": a.ID, "owner": a.Owner,
				"records": ids, "link": a.Link}})
		if err != nil {
			return err
		}
		a.AuditSeq = rec.Seq
		as, err := loadActions(tx)
		if err != nil {
			return err
		}
		if err := saveActions(tx, append(as, a)); err != nil {
			return err
		}
		out = &Crossing{Limit: l.String(), Action: a}
		return putLimit(tx, l, limitState{Crossed: true, Since: now, ActionID: a.ID})
	})
	if err != nil {
		return nil, fmt.Errorf("kri: limit %s: %w", l.String(), err)
	}
	return out, nil
}

func getLimit(tx broker.Tx, l config.Limit) (limitState, error) {
	var st limitState
	b, err := tx.GetState(limitKey(l))
	if err != nil && !errors.Is(err, broker.ErrNotFound) {
		return st, err
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &st); err != nil {
			return st, fmt.Errorf("decode %s: %w", limitKey(l), err)
		}
	}
	return st, nil
}

func putLimit(tx broker.Tx, l config.Limit, st limitState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return tx.PutState(limitKey(l), b)
}

func (e *Evaluator) notify(ctx context.Context, l config.Limit, ind Indicator, a Action) {
	if e.o.Notifier == nil {
		return
	}
	text := fmt.Sprintf(":warning: Quality tolerance limit crossed: %s (value %g, %d records). Action %s opened for %s: %s%s",
		l.String(), *ind.Value, len(ind.Records), a.ID, a.Owner, e.o.PublicURL, a.Link)
	if err := e.o.Notifier.SecurityNotice(ctx, text); err != nil {
		e.o.Log.Warn("limit crossing not announced in Slack", "limit", l.String(), "err", err)
	}
}

// refreshOpen counts the open actions for /metrics.
func (e *Evaluator) refreshOpen(ctx context.Context) {
	as, err := e.Actions(ctx, false)
	if err != nil {
		return
	}
	e.mu.Lock()
	e.open = len(as)
	e.mu.Unlock()
}

// verifierLease lets one replica at a time verify recordings.
type verifierLease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

const leaseKey = "kri/verifier"

// verifyRound verifies up to verifyBatch recordings of sessions that
// ended between the lookback and VerifyAfter ago and have no verdict in
// the audit log, oldest first, and audits each verdict as
// session.verify by "system".
func (e *Evaluator) verifyRound(ctx context.Context) error {
	now := e.now()
	after := e.o.VerifyAfter
	if after <= 0 {
		after = e.config().Indicators.VerifyAfterOrDefault()
	}
	var todo []broker.Session
	err := e.o.Store.Update(ctx, func(tx broker.Tx) error {
		todo = nil
		var l verifierLease
		if b, err := tx.GetState(leaseKey); err == nil && len(b) > 0 {
			_ = json.Unmarshal(b, &l)
		} else if err != nil && !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		if l.Holder != e.o.Replica && now.Before(l.Until) {
			return nil
		}
		b, _ := json.Marshal(verifierLease{Holder: e.o.Replica, Until: now.Add(3 * e.config().Indicators.IntervalOrDefault())})
		if err := tx.PutState(leaseKey, b); err != nil {
			return err
		}
		since := now.Add(-e.config().Indicators.LookbackOrDefault())
		ss, err := tx.ListSessions(broker.SessionFilter{Since: since.Add(-24 * time.Hour)})
		if err != nil {
			return err
		}
		recs, err := tx.ListAudit(broker.AuditFilter{Since: since, ActionPrefix: ActionSessionVerify})
		if err != nil {
			return err
		}
		vs := verdicts(&input{audit: recs})
		for _, s := range ss {
			if s.ManifestHash == "" || s.EndedAt.IsZero() || s.EndedAt.Before(since) || s.EndedAt.After(now.Add(-after)) {
				continue
			}
			if _, ok := vs[s.ID]; !ok {
				todo = append(todo, s)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].EndedAt.Before(todo[j].EndedAt) })
	if len(todo) > verifyBatch {
		todo = todo[:verifyBatch]
	}
	for _, s := range todo {
		intact, verdict, err := e.o.Verifier.Verify(ctx, s.ID)
		if err != nil {
			e.o.Log.Warn("recording not verified", "session", s.ID, "err", err)
			continue
		}
		outcome := broker.OutcomeSuccess
		if !intact {
			outcome = broker.OutcomeError
		}
		if _, err := e.o.Audit.Append(ctx, audit.Entry{Actor: "system", Action: ActionSessionVerify, Target: s.Target,
			Outcome: outcome, Reason: verdict, Details: map[string]any{"session_id": s.ID, "via": "indicators"}}); err != nil {
			return err
		}
	}
	return nil
}
