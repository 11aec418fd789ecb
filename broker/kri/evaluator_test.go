package kri_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/kri"
)

// The example limits parse, validate and name known indicators;
// a bad op or an unknown indicator is refused.
func TestKRILimitsConfig(t *testing.T) {
	yaml := `
indicators:
  interval: 30s
  limits:
    - {indicator: sessions_without_recording, op: ">", value: 0}
    - {indicator: users_without_mfa_ratio, op: ">=", value: 0.02}
    - {indicator: drill_failures_quarter, op: ">=", value: 2}
    - {indicator: api_tokens_over_rotation, op: ">=", value: 3}
    - {indicator: retrieval_pass_rate, op: "<", value: 0.95}
`
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := kri.CheckLimits(c.Indicators.Limits); err != nil {
		t.Fatal(err)
	}
	if got := c.Indicators.Limits[4].String(); got != "retrieval_pass_rate < 0.95" {
		t.Fatalf("limit %q", got)
	}
	if c.Indicators.IntervalOrDefault() != 30*time.Second || c.Indicators.RubberStampOrDefault() != 30*time.Second {
		t.Fatal("interval or rubber_stamp default wrong")
	}
	for _, bad := range []string{
		`indicators: {limits: [{indicator: sessions_without_recording, op: "=>", value: 0}]}`,
		`indicators: {limits: [{indicator: "", op: ">", value: 0}]}`,
		`indicators: {interval: 10ms}`,
	} {
		if _, err := config.Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "indicators.") {
			t.Errorf("%s: accepted (%v)", bad, err)
		}
	}
	// The production example's limits name known indicators.
	prod, err := config.Load("../../deploy/custos.production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(prod.Indicators.Limits) == 0 || kri.CheckLimits(prod.Indicators.Limits) != nil {
		t.Fatalf("deploy/custos.production.yaml limits: %v", kri.CheckLimits(prod.Indicators.Limits))
	}
	if err := kri.CheckLimits([]config.Limit{{Indicator: "sessions_without_recordings", Op: ">"}}); err == nil {
		t.Error("unknown indicator accepted")
	}
	for _, c := range []struct {
		op   string
		v    float64
		want bool
	}{{">", 1, true}, {">", 0, false}, {">=", 0, true}, {"<", -1, true}, {"<", 0, false}, {"<=", 0, true}} {
		if got := (config.Limit{Op: c.op}).Crossed(c.v); got != c.want {
			t.Errorf("%g %s 0 = %v", c.v, c.op, got)
		}
	}
}

func (e *env) evaluator(n *notices, reg *prometheus.Registry) *kri.Evaluator {
	e.t.Helper()
	ev, err := kri.NewEvaluator(kri.EvaluatorOptions{Computer: e.c, Store: e.st, Audit: e.log, Notifier: n,
		Registry: reg, PublicURL: "https://custos.example", Now: e.clock})
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func (e *env) auditCount(action string) int {
	e.t.Helper()
	var n int
	e.update(func(tx broker.Tx) error {
		rs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: action})
		n = len(rs)
		return err
	})
	return n
}

// A crossing alerts once, however many evaluations see it; going back
// within the limit re-arms it, and the next crossing alerts again.
func TestKRILimitAlertsOncePerCrossing(t *testing.T) {
	e := newEnv(t)
	e.cfg.Indicators.Limits = []config.Limit{{Indicator: "sessions_without_recording", Op: ">", Value: 0}}
	n := &notices{}
	reg := prometheus.NewRegistry()
	ev := e.evaluator(n, reg)
	ctx := t.Context()
	eval := func() []kri.Crossing {
		t.Helper()
		c, err := ev.Evaluate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := eval(); len(c) != 0 {
		t.Fatalf("crossing with nothing wrong: %+v", c)
	}
	bad := e.session(broker.Session{User: "alice", StartedAt: e.now.Add(-2 * time.Hour), EndedAt: e.now.Add(-time.Hour), State: broker.SessionInterrupted})
	first := eval()
	if len(first) != 1 {
		t.Fatalf("crossings %+v, want one", first)
	}
	for range 4 {
		if c := eval(); len(c) != 0 {
			t.Fatalf("alerted again on a standing crossing: %+v", c)
		}
	}
	if got := n.count(); got != 1 {
		t.Fatalf("%d security notices, want 1: %q", got, n.texts)
	}
	if !strings.Contains(n.texts[0], "sessions_without_recording > 0") || !strings.Contains(n.texts[0], "https://custos.example/ui/dashboard?indicator=sessions_without_recording") {
		t.Fatalf("notice %q lacks the limit or the link", n.texts[0])
	}
	if got := e.auditCount(kri.AuditLimitCrossed); got != 1 {
		t.Fatalf("%d kri.limit_crossed records, want 1", got)
	}
	acts, err := ev.Actions(ctx, false)
	if err != nil || len(acts) != 1 {
		t.Fatalf("open actions %+v %v", acts, err)
	}
	a := acts[0]
	if a.Owner != "security" || a.OpenedAt.IsZero() || a.ID != first[0].Action.ID || a.Records[0].ID != bad.ID || a.AuditSeq == 0 {
		t.Fatalf("action %+v", a)
	}
	if v := gauge(t, reg, "custos_kri_limit_crossed"); v != 1 {
		t.Fatalf("custos_kri_limit_crossed = %v", v)
	}
	if v := gauge(t, reg, "custos_kri_sessions_without_recording"); v != 1 {
		t.Fatalf("custos_kri_sessions_without_recording = %v", v)
	}
	if v := gauge(t, reg, "custos_kri_actions_open"); v != 1 {
		t.Fatalf("custos_kri_actions_open = %v", v)
	}

	// Fixed: the recording is stored. Back within the limit, re-armed.
	bad.ManifestHash = "h"
	e.session(bad)
	e.audit(broker.AuditRecord{Time: e.now, Actor: "sam", Action: "session.verify", Outcome: broker.OutcomeSuccess,
		Details: []byte(`{"session_id":"` + bad.ID + `"}`)})
	if c := eval(); len(c) != 0 {
		t.Fatalf("crossing while within: %+v", c)
	}
	if got := e.auditCount(kri.AuditLimitCleared); got != 1 {
		t.Fatalf("%d kri.limit_cleared records, want 1", got)
	}
	if v := gauge(t, reg, "custos_kri_limit_crossed"); v != 0 {
		t.Fatalf("custos_kri_limit_crossed = %v after clearing", v)
	}
	// The action stays open until closed.
	if acts, _ := ev.Actions(ctx, false); len(acts) != 1 {
		t.Fatalf("action closed itself: %+v", acts)
	}
	e.session(broker.Session{User: "bob", StartedAt: e.now.Add(-3 * time.Hour), EndedAt: e.now.Add(-2 * time.Hour), State: broker.SessionClosed})
	if c := eval(); len(c) != 1 {
		t.Fatalf("second crossing raised %d alerts, want 1", len(c))
	}
	eval()
	if n.count() != 2 || e.auditCount(kri.AuditLimitCrossed) != 2 {
		t.Fatalf("after two crossings: %d notices, %d audit records", n.count(), e.auditCount(kri.AuditLimitCrossed))
	}
}

// Two replicas evaluating the same crossing at once raise it once.
func TestKRILimitOneReplicaRaises(t *testing.T) {
	e := newEnv(t)
	e.cfg.Indicators.Limits = []config.Limit{{Indicator: "users_without_mfa", Op: ">=", Value: 1}}
	e.cfg.Users = append(e.cfg.Users, config.User{Name: "mallory"})
	n := &notices{}
	evs := []*kri.Evaluator{e.evaluator(n, nil), e.evaluator(n, nil), e.evaluator(n, nil)}
	var wg sync.WaitGroup
	for range 3 {
		for _, ev := range evs {
			wg.Go(func() {
				if _, err := ev.Evaluate(t.Context()); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if n.count() != 1 || e.auditCount(kri.AuditLimitCrossed) != 1 {
		t.Fatalf("%d notices and %d kri.limit_crossed records from three replicas, want 1", n.count(), e.auditCount(kri.AuditLimitCrossed))
	}
	if acts, _ := evs[0].Actions(t.Context(), true); len(acts) != 1 {
		t.Fatalf("actions %+v", acts)
	}
}

// An action is closed only with a comment, once, and the close is
// audited; closed actions leave the open list.
func TestKRICloseAction(t *testing.T) {
	e := newEnv(t)
	e.cfg.Indicators.Limits = []config.Limit{{Indicator: "users_without_mfa", Op: ">", Value: 0}}
	e.cfg.Indicators.Owner = "dba-leads"
	e.cfg.Users = append(e.cfg.Users, config.User{Name: "mallory"})
	ev := e.evaluator(&notices{}, nil)
	c, err := ev.Evaluate(t.Context())
	if err != nil || len(c) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
	id := c[0].Action.ID
	if c[0].Action.Owner != "dba-leads" {
		t.Fatalf("owner %q", c[0].Action.Owner)
	}
	if _, err := ev.CloseAction(t.Context(), "sam", id, "  "); broker.CodeOf(err) != "comment_required" {
		t.Fatalf("closed without a comment: %v", err)
	}
	if _, err := ev.CloseAction(t.Context(), "sam", "act_none", "x"); broker.CodeOf(err) != "not_found" {
		t.Fatalf("unknown action: %v", err)
	}
	a, err := ev.CloseAction(t.Context(), "sam", id, "TOTP enrolled for mallory, INC-77")
	if err != nil || a.State != kri.ActionClosed || a.ClosedBy != "sam" || a.Comment == "" {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := ev.CloseAction(t.Context(), "sam", id, "again"); broker.CodeOf(err) != "action_closed" {
		t.Fatalf("closed twice: %v", err)
	}
	if acts, _ := ev.Actions(t.Context(), false); len(acts) != 0 {
		t.Fatalf("closed action still open: %+v", acts)
	}
	if e.auditCount(kri.AuditActionClose) != 1 {
		t.Fatal("close not audited")
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s on /metrics", name)
	return 0
}
