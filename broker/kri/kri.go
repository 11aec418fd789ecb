// Package kri computes the key risk indicators on the security dashboard
// from the state store and the audit log, and keeps the quality tolerance
// limits set on them: an Evaluator raises each crossing once (Slack, an
// audit record, a gauge) and opens a dated action that stays open until
// someone closes it with a comment. Every indicator carries the records
// behind its number, each with a link to its page in the web UI.
//
// The computations are pure reads of one store transaction at an instant
// the caller's clock gives; nothing here writes but the evaluator and the
// actions.
package kri

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/retrieval"
)

// Status of an indicator against its limits.
const (
	StatusOK      = "ok"
	StatusCrossed = "crossed"
	StatusNoData  = "no_data"
)

// Record kinds, which decide the page a record links to.
const (
	KindRequest = "request"
	KindGrant   = "grant"
	KindSession = "session"
	KindAudit   = "audit"
	KindDrill   = "drill"
	KindUser    = "user"
	KindToken   = "token"
)

// Record is one record behind an indicator's number.
type Record struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Seq is the audit sequence number of an audit record.
	Seq int64 `json:"seq,omitempty"`
	// User and Target say whom and what the record is about.
	User   string `json:"user,omitempty"`
	Target string `json:"target,omitempty"`
	// At is the record's time (a request's creation, a session's start).
	At time.Time `json:"at,omitzero"`
	// Detail says why the record counts, in a few words.
	Detail string `json:"detail,omitempty"`
	// Link is the record's page in the web UI.
	Link string `json:"link,omitempty"`
}

// Row is one line of an indicator's breakdown (per target, per pair).
type Row struct {
	Key     string  `json:"key"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds,omitempty"`
}

// Indicator is one key risk indicator as of an instant.
type Indicator struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Value is nil when there is no data yet.
	Value *float64 `json:"value"`
	// Unit is "count", "ratio" or "seconds".
	Unit   string `json:"unit"`
	Status string `json:"status"`
	// Limits are the configured limits on the indicator; Crossed the
	// ones the value crosses.
	Limits  []string `json:"limits,omitempty"`
	Crossed []string `json:"crossed,omitempty"`
	// Source says where the number comes from.
	Source    string `json:"source"`
	Breakdown []Row  `json:"breakdown,omitempty"`
	// RecordCount is how many records are behind the value; Records
	// lists them (up to a cap), and is left out of the summary list.
	RecordCount int       `json:"record_count"`
	Records     []Record  `json:"records,omitempty"`
	At          time.Time `json:"at"`
}

// Known reports whether name is an indicator this package computes.
func Known(name string) bool { return slices.Contains(Names(), name) }

// Names lists every indicator, in dashboard order.
func Names() []string {
	out := make([]string, len(catalogue))
	for i, d := range catalogue {
		out[i] = d.name
	}
	return out
}

// ErrUnknown is returned for an indicator name this package does not
// compute.
var ErrUnknown = errors.New("kri: unknown indicator")

// CheckLimits reports limits on indicators that do not exist.
func CheckLimits(limits []config.Limit) error {
	var errs []error
	seen := map[string]bool{}
	for i, l := range limits {
		if !Known(l.Indicator) {
			errs = append(errs, fmt.Errorf("indicators.limits[%d].indicator: unknown indicator %q (known: %s)", i, l.Indicator,
				strings.Join(Names(), ", ")))
		}
		if seen[l.String()] {
			errs = append(errs, fmt.Errorf("indicators.limits[%d]: %s is listed twice", i, l.String()))
		}
		seen[l.String()] = true
	}
	return errors.Join(errs...)
}

// drills reads drill standing and history; *breakglass.Service
// implements it. Optional: without it the drill indicators have no data.
type drills interface {
	Standings(ctx context.Context) ([]breakglass.DrillStatus, error)
	DrillsSince(ctx context.Context, since time.Time) ([]breakglass.Drill, error)
}

// users lists the enabled users; *identity.Directory implements it.
type users interface {
	Users() []identity.Identity
}

// Options configure a Computer. Config (or Live) and Store are required.
type Options struct {
	Config *config.Config
	// Live, when set, is the running broker's config, which a reload
	// swaps: each computation reads the users, targets, policies and
	// indicators settings current then. It takes precedence over Config.
	Live  interface{ Load() *config.Config }
	Store broker.Store
	// Drills serves the drill indicators. Default: none (no data).
	Drills drills
	// Directory lists the enabled users, single sign-on users included,
	// for the stale and dormant indicators. Default: the config's
	// enabled users.
	Directory users
	// Factors lists every user (config, single sign-on, SCIM) with their
	// factors, for the second-factor indicators; *identity.Service
	// implements it. Default: the config's users and their TOTP secrets.
	Factors factorLister
	// Now defaults to time.Now.
	Now func() time.Time
	// MaxRecords caps each indicator's drill-down list. Default: 500.
	MaxRecords int
}

// Computer computes the indicators.
type Computer struct {
	o Options
}

// New returns a Computer.
func New(o Options) (*Computer, error) {
	if (o.Config == nil && o.Live == nil) || o.Store == nil {
		return nil, errors.New("kri: Config and Store are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = 500
	}
	return &Computer{o: o}, nil
}

// Config is the config the next computation reads.
func (c *Computer) Config() *config.Config {
	if c.o.Live != nil {
		return c.o.Live.Load()
	}
	return c.o.Config
}

// input is what one computation reads, loaded once.
type input struct {
	cfg      *config.Config
	now      time.Time
	since    time.Time // now - lookback
	requests []broker.Request
	grants   []broker.Grant
	sessions []broker.Session
	audit    []broker.AuditRecord // lookback window
	tokens   []broker.Token
	// people are the enabled users' names (config and single sign-on).
	people []string
	// factors are every user's factors, when Options.Factors is set.
	factors []identity.UserFactors
	drills  *drillData
	state   func(key string) ([]byte, error)
}

type drillData struct {
	standings []breakglass.DrillStatus
	quarter   []breakglass.Drill
}

// def is one indicator's definition.
type def struct {
	name, title, unit, source string
	compute                   func(in *input) (value *float64, rows []Row, recs []Record)
}

// Compute returns every indicator as of now.
func (c *Computer) Compute(ctx context.Context) ([]Indicator, error) {
	return c.compute(ctx, "")
}

// One returns one indicator; an unknown name wraps ErrUnknown.
func (c *Computer) One(ctx context.Context, name string) (Indicator, error) {
	if !Known(name) {
		return Indicator{}, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	out, err := c.compute(ctx, name)
	if err != nil {
		return Indicator{}, err
	}
	return out[0], nil
}

func (c *Computer) compute(ctx context.Context, only string) ([]Indicator, error) {
	now := c.o.Now().UTC()
	cfg := c.Config()
	in, err := c.load(ctx, cfg, now)
	if err != nil {
		return nil, err
	}
	var out []Indicator
	for _, d := range catalogue {
		if only != "" && d.name != only {
			continue
		}
		v, rows, recs := d.compute(in)
		if recs == nil {
			recs = []Record{}
		}
		count := len(recs)
		if len(recs) > c.o.MaxRecords {
			// A copy: recs[:MaxRecords] alone would keep every record
			// (one per session this month, for one) alive behind it.
			recs = slices.Clone(recs[:c.o.MaxRecords])
		}
		ind := Indicator{Name: d.name, Title: d.title, Unit: d.unit, Source: d.source, Value: v, Breakdown: rows,
			RecordCount: count, Records: recs, At: now, Status: StatusOK}
		for _, l := range cfg.Indicators.Limits {
			if l.Indicator != d.name {
				continue
			}
			ind.Limits = append(ind.Limits, l.String())
			if v != nil && l.Crossed(*v) {
				ind.Crossed = append(ind.Crossed, l.String())
			}
		}
		switch {
		case v == nil:
			ind.Status = StatusNoData
		case len(ind.Crossed) > 0:
			ind.Status = StatusCrossed
		}
		out = append(out, ind)
	}
	return out, nil
}

// load reads everything the indicators need in one read transaction.
func (c *Computer) load(ctx context.Context, cfg *config.Config, now time.Time) (*input, error) {
	in := &input{cfg: cfg, now: now, since: now.Add(-cfg.Indicators.LookbackOrDefault())}
	// Requests reach back as far as the stale-user window, the longest.
	reqSince := now.Add(-max(cfg.Indicators.StaleAfterOrDefault(), cfg.Indicators.LookbackOrDefault()))
	states := map[string][]byte{}
	err := c.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		reqs, err := tx.ListRequests(broker.RequestFilter{})
		if err != nil {
			return err
		}
		for _, r := range reqs {
			if !r.CreatedAt.Before(reqSince) {
				in.requests = append(in.requests, r)
			}
		}
		all, err := tx.ListGrants(broker.GrantFilter{})
		if err != nil {
			return err
		}
		for _, g := range all {
			if g.ActiveAt(now) || !g.StartsAt.Before(in.since) {
				in.grants = append(in.grants, g)
			}
		}
		from := monthStart(now)
		if in.since.Before(from) {
			from = in.since
		}
		if in.sessions, err = tx.ListSessions(broker.SessionFilter{Since: from}); err != nil {
			return err
		}
		auditSince := now.Add(-max(cfg.Indicators.DormantAfterOrDefault(), cfg.Indicators.LookbackOrDefault()))
		if in.audit, err = tx.ListAudit(broker.AuditFilter{Since: auditSince}); err != nil {
			return err
		}
		users, err := tx.ListTokenUsers()
		if err != nil {
			return err
		}
		for _, u := range users {
			ts, err := tx.ListTokens(u)
			if err != nil {
				return err
			}
			in.tokens = append(in.tokens, ts...)
		}
		for _, k := range []string{retrieval.StateKey} {
			b, err := tx.GetState(k)
			if err != nil && !errors.Is(err, broker.ErrNotFound) {
				return err
			}
			states[k] = b
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kri: read store: %w", err)
	}
	in.state = func(key string) ([]byte, error) { return states[key], nil }
	if c.o.Factors != nil {
		if in.factors, err = c.o.Factors.Factors(ctx); err != nil {
			return nil, fmt.Errorf("kri: users' factors: %w", err)
		}
	}
	if c.o.Directory != nil {
		for _, id := range c.o.Directory.Users() {
			in.people = append(in.people, id.Name)
		}
	} else {
		for _, u := range cfg.Users {
			if !u.Disabled {
				in.people = append(in.people, u.Name)
			}
		}
	}
	if c.o.Drills != nil {
		d := &drillData{}
		if d.standings, err = c.o.Drills.Standings(ctx); err != nil {
			return nil, fmt.Errorf("kri: drills: %w", err)
		}
		if d.quarter, err = c.o.Drills.DrillsSince(ctx, quarterStart(now)); err != nil {
			return nil, fmt.Errorf("kri: drills: %w", err)
		}
		in.drills = d
	}
	return in, nil
}

// quarterStart is the first instant of t's calendar quarter (UTC).
func quarterStart(t time.Time) time.Time {
	m := time.Month((int(t.Month())-1)/3*3 + 1)
	return time.Date(t.Year(), m, 1, 0, 0, 0, 0, time.UTC)
}

func num(v float64) *float64 { return &v }
