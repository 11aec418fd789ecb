package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Throttle defaults.
const (
	DefaultThrottleBurst   = 5
	DefaultThrottleWindow  = time.Minute
	DefaultThrottleMaxKeys = 1024
)

// SummaryActor is the actor of a summary record whose refusals named more
// than one actor.
const SummaryActor = "anonymous"

// maxTallied bounds the distinct reasons, actors and sources a summary
// counts; the rest are counted under otherTally. maxTallyLen bounds each
// of those strings.
const (
	maxTallied  = 10
	maxTallyLen = 160
	otherTally  = "(other)"
)

// ThrottleOptions configure a Throttle. Zero fields take the defaults.
type ThrottleOptions struct {
	// Burst is how many records per key and window are appended as they
	// come. Default 5.
	Burst int
	// Window is how long a key's window lasts from its first refusal.
	// Default one minute.
	Window time.Duration
	// MaxKeys caps the (action, source) keys held at once. Refusals for a
	// new key beyond it share one overflow key per action. Default 1024.
	MaxKeys int
	// Store, when set, counts the records appended per key and window in
	// the state store, so Burst holds across every broker sharing it:
	// replicas together append at most Burst records of a key per
	// window, and each adds at most one summary of what it counted.
	// Default: nil, counts in memory (per process).
	Store broker.Store
	// Now defaults to time.Now; tests inject a clock.
	Now func() time.Time
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// appender is the part of Log a Throttle writes through.
type appender interface {
	Append(ctx context.Context, e Entry) (broker.AuditRecord, error)
}

// Throttle bounds the audit records of refusals that happen before anyone
// is authenticated (forged Slack signatures, unknown bearer tokens,
// rate-limited sign-ins), which anyone who can reach the broker can
// produce at will. Per key, an action and a source address, the first
// Burst refusals of a window are appended as they come; later ones in the
// window are only counted, and when the window closes one summary record
// says how many there were, when, and why. Nothing is lost: every refusal
// is either its own record or counted in a summary.
//
// Summaries of closed windows are appended by Record (for its own key),
// by FlushClosed, which Run calls periodically, and by Close, which
// appends every pending summary; Run calls Close when its context ends.
// State is in memory and bounded by MaxKeys plus one overflow key per
// action; actions are fixed strings of the calling code. With
// ThrottleOptions.Store, whether a refusal may still be appended is also
// decided by a count in the state store, so the burst holds across
// brokers; each broker still summarizes what it counted itself.
type Throttle struct {
	log     appender
	burst   int
	window  time.Duration
	maxKeys int
	now     func() time.Time
	logger  *slog.Logger
	shared  broker.Store // nil: counts per process

	mu      sync.Mutex
	keys    map[throttleKey]*tally
	regular int  // keys that are not overflow keys
	closed  bool // after Close every refusal is appended
}

type throttleKey struct {
	action, source string
	overflow       bool
}

// tally is one key's current window.
type tally struct {
	start       time.Time
	seen        int  // refusals in the window, appended or not
	full        bool // the store says the burst is spent across brokers
	suppressed  int
	first, last time.Time // of the suppressed refusals
	reasons     counts
	actors      counts
	sources     counts // overflow keys only
}

// NewThrottle returns a Throttle appending to log.
func NewThrottle(log *Log, o ThrottleOptions) *Throttle {
	return newThrottle(log, o)
}

func newThrottle(log appender, o ThrottleOptions) *Throttle {
	if o.Burst <= 0 {
		o.Burst = DefaultThrottleBurst
	}
	if o.Window <= 0 {
		o.Window = DefaultThrottleWindow
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultThrottleMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Throttle{log: log, burst: o.Burst, window: o.Window, maxKeys: o.MaxKeys, now: o.Now,
		logger: o.Log.With("component", "audit"), keys: map[throttleKey]*tally{}, shared: o.Store}
}

// Record audits a refusal of e.Action from source (a client address
// without port; "" when unknown): it appends e, or counts it toward the
// key's summary. IPv6 addresses count per /64, the block one host or
// subscriber usually holds. e.Outcome should be denied. It returns the
// error of an append; a counted refusal returns nil.
func (t *Throttle) Record(ctx context.Context, source string, e Entry) error {
	ctx = context.WithoutCancel(ctx)
	now := t.now()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return t.appendEntry(ctx, e)
	}
	k := throttleKey{action: e.Action, source: keySource(source)}
	var due []Entry
	if cur, ok := t.keys[k]; ok && t.ended(cur, now) {
		if sum, ok := t.remove(k, cur, false); ok {
			due = append(due, sum)
		}
	}
	if _, ok := t.keys[k]; !ok && t.regular >= t.maxKeys {
		// Make room from windows that have closed before overflowing.
		due = append(due, t.takeClosed(now, false)...)
	}
	if _, ok := t.keys[k]; !ok && t.regular >= t.maxKeys {
		k = throttleKey{action: e.Action, overflow: true}
		if cur, ok := t.keys[k]; ok && t.ended(cur, now) {
			if sum, ok := t.remove(k, cur, false); ok {
				due = append(due, sum)
			}
		}
	}
	ta, ok := t.keys[k]
	if !ok {
		ta = &tally{start: now}
		t.keys[k] = ta
		if !k.overflow {
			t.regular++
		}
	}
	ta.seen++
	appendIt := ta.seen <= t.burst && !ta.full
	if !appendIt {
		ta.suppress(now, e, source, k.overflow)
	}
	t.mu.Unlock()

	if appendIt && t.shared != nil {
		// The burst is shared: another broker may have spent it.
		if over, err := t.sharedOver(ctx, k, now); err != nil {
			t.logger.Error("shared audit throttle count failed; the refusal is recorded", "err", err)
		} else if over {
			t.mu.Lock()
			if t.keys[k] == ta {
				appendIt = false
				ta.full = true
				ta.suppress(now, e, source, k.overflow)
			}
			t.mu.Unlock()
		}
	}

	err := t.appendSummaries(ctx, due)
	if appendIt {
		err = errors.Join(err, t.appendEntry(ctx, e))
	}
	return err
}

// suppress counts a refusal into the summary. Callers hold mu.
func (ta *tally) suppress(now time.Time, e Entry, source string, overflow bool) {
	if ta.suppressed == 0 {
		ta.first = now
	}
	ta.suppressed++
	ta.last = now
	ta.reasons.add(e.Reason)
	ta.actors.add(e.Actor)
	if overflow {
		ta.sources.add(source)
	}
}

// sharedWindow is a key's window as counted in the store.
type sharedWindow struct {
	Start    time.Time `json:"start"`
	Recorded int       `json:"recorded"`
}

// sharedOver counts one more record of key k in the store and reports
// whether that passes the burst of the key's shared window: then the
// refusal is counted into a summary instead.
func (t *Throttle) sharedOver(ctx context.Context, k throttleKey, now time.Time) (bool, error) {
	id := "throttle/" + k.action + "/" + k.source
	if k.overflow {
		id = "throttle/" + k.action + "/(overflow)"
	}
	sum := sha256.Sum256([]byte(id))
	key := "throttle/" + hex.EncodeToString(sum[:16])
	var over bool
	err := t.shared.Update(ctx, func(tx broker.Tx) error {
		var w sharedWindow
		b, err := tx.GetLimit(key)
		switch {
		case errors.Is(err, broker.ErrNotFound):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(b, &w); err != nil {
				w = sharedWindow{}
			}
		}
		if w.Start.IsZero() || !now.Before(w.Start.Add(t.window)) {
			w = sharedWindow{Start: now}
		}
		over = w.Recorded >= t.burst
		if over {
			return nil
		}
		w.Recorded++
		b, err = json.Marshal(w)
		if err != nil {
			return err
		}
		return tx.PutLimit(key, b, w.Start.Add(t.window))
	})
	if err != nil {
		return false, fmt.Errorf("audit throttle: %w", err)
	}
	return over, nil
}

// FlushClosed appends the summaries of the windows that have closed.
func (t *Throttle) FlushClosed(ctx context.Context) error {
	t.mu.Lock()
	due := t.takeClosed(t.now(), false)
	t.mu.Unlock()
	return t.appendSummaries(ctx, due)
}

// Close appends the summary of every window, closed or not, and makes
// later refusals append records one each. It is safe to call more than
// once.
func (t *Throttle) Close(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	due := t.takeClosed(time.Time{}, true)
	t.mu.Unlock()
	return t.appendSummaries(ctx, due)
}

// Run appends the summaries of closed windows every quarter window (at
// least every second) until ctx ends, then calls Close.
func (t *Throttle) Run(ctx context.Context) {
	tick := max(t.window/4, time.Second)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := t.Close(context.WithoutCancel(ctx)); err != nil {
				t.logger.Error("audit summaries not appended at shutdown", "err", err)
			}
			return
		case <-tk.C:
			if err := t.FlushClosed(ctx); err != nil {
				t.logger.Error("audit summaries not appended", "err", err)
			}
		}
	}
}

// ended reports whether ta's window is over at now. Callers hold mu.
func (t *Throttle) ended(ta *tally, now time.Time) bool {
	return !now.Before(ta.start.Add(t.window))
}

// takeClosed removes the keys whose window is over at now (every key with
// all) and returns the summaries due. Callers hold mu.
func (t *Throttle) takeClosed(now time.Time, all bool) []Entry {
	var due []Entry
	for k, ta := range t.keys {
		if all || t.ended(ta, now) {
			if sum, ok := t.remove(k, ta, all); ok {
				due = append(due, sum)
			}
		}
	}
	return due
}

// remove forgets key k and returns its summary, if anything was
// suppressed. Callers hold mu.
func (t *Throttle) remove(k throttleKey, ta *tally, early bool) (Entry, bool) {
	delete(t.keys, k)
	if !k.overflow {
		t.regular--
	}
	if ta.suppressed == 0 {
		return Entry{}, false
	}
	src := k.source
	if k.overflow {
		src = "(many: key limit reached)"
	} else if src == "" {
		src = "(unknown)"
	}
	d := map[string]any{
		"summary":      true,
		"suppressed":   ta.suppressed,
		"recorded":     ta.seen - ta.suppressed,
		"source":       k.source,
		"window_start": ta.start.UTC(),
		"window":       t.window.String(),
		"first":        ta.first.UTC(),
		"last":         ta.last.UTC(),
		"reasons":      ta.reasons.m,
		"actors":       ta.actors.m,
	}
	if k.overflow {
		d["overflow"] = true
		d["sources"] = ta.sources.m
	}
	if early {
		d["at_shutdown"] = true
	}
	e := Entry{Actor: SummaryActor, Action: k.action, Outcome: broker.OutcomeDenied, Details: d,
		Reason: fmt.Sprintf("summary: %d more refusals from %s, counted and not recorded one by one", ta.suppressed, src)}
	if a, ok := ta.actors.only(); ok {
		e.Actor = a
	}
	return e, true
}

// appendSummaries appends summaries built by remove, logging each.
func (t *Throttle) appendSummaries(ctx context.Context, due []Entry) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, e := range due {
		if err := t.appendEntry(ctx, e); err != nil {
			errs = append(errs, err)
			continue
		}
		d, _ := e.Details.(map[string]any)
		t.logger.Warn("refusals summarized in the audit log", "action", e.Action, "source", d["source"],
			"suppressed", d["suppressed"])
	}
	return errors.Join(errs...)
}

func (t *Throttle) appendEntry(ctx context.Context, e Entry) error {
	_, err := t.log.Append(ctx, e)
	return err
}

// keySource is the source part of a key: the address, or its /64 for
// IPv6, so one host cycling through its block is one key.
func keySource(source string) string {
	a, err := netip.ParseAddr(source)
	if err != nil || !a.Is6() || a.Is4In6() {
		return source
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return source
	}
	return p.String()
}

// counts tallies strings, at most maxTallied distinct ones.
type counts struct{ m map[string]int }

func (c *counts) add(s string) {
	if s == "" {
		return
	}
	if len(s) > maxTallyLen {
		s = strings.ToValidUTF8(s[:maxTallyLen], "") + "…"
	}
	if c.m == nil {
		c.m = map[string]int{}
	}
	if _, ok := c.m[s]; !ok && len(c.m) >= maxTallied {
		s = otherTally
	}
	c.m[s]++
}

// only returns the one string counted, if exactly one was.
func (c *counts) only() (string, bool) {
	if len(c.m) != 1 {
		return "", false
	}
	for s := range c.m {
		if s == otherTally {
			return "", false
		}
		return s, true
	}
	return "", false
}
