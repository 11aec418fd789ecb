package kri_test

import (
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/kri"
)

// A reload swaps the live config: the next computation counts the new
// users, and a limit added by the reload is evaluated; a reload takes the
// indicators section but its interval.
func TestKRIFollowsReload(t *testing.T) {
	e := newEnv(t)
	live := config.NewLive(e.cfg)
	c, err := kri.New(kri.Options{Live: live, Store: e.st, Drills: e.bg, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	n := &notices{}
	ev, err := kri.NewEvaluator(kri.EvaluatorOptions{Computer: c, Store: e.st, Audit: e.log, Notifier: n, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	if cr, err := ev.Evaluate(t.Context()); err != nil || len(cr) != 0 {
		t.Fatalf("%+v %v", cr, err)
	}
	next := *e.cfg
	next.Users = append(slices.Clone(e.cfg.Users), config.User{Name: "mallory"})
	next.Indicators = config.Indicators{Interval: config.Duration(time.Hour),
		Limits: []config.Limit{{Indicator: "users_without_mfa", Op: ">", Value: 0}}}
	merged, notApplied := config.Merge(e.cfg, &next)
	if !slices.Equal(notApplied, []string{"indicators.interval"}) || merged.Indicators.Interval != 0 || len(merged.Indicators.Limits) != 1 {
		t.Fatalf("merge: not applied %v, indicators %+v", notApplied, merged.Indicators)
	}
	live.Store(merged)
	ind, err := c.One(t.Context(), "users_without_mfa")
	if err != nil || *ind.Value != 1 || !hasRecord(ind, "mallory") || ind.Status != kri.StatusCrossed {
		t.Fatalf("after reload: %+v %v", ind, err)
	}
	if cr, err := ev.Evaluate(t.Context()); err != nil || len(cr) != 1 || n.count() != 1 {
		t.Fatalf("limit added by reload: %+v %v, %d notices", cr, err, n.count())
	}
}

// With the directory, stale and dormant count the users it knows (single
// sign-on users among them) and never a disabled one.
func TestKRIUsersFromDirectory(t *testing.T) {
	e := newEnv(t)
	dir, err := identity.NewDirectory(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kri.New(kri.Options{Config: e.cfg, Directory: dir, Store: e.st, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	ind, err := c.One(t.Context(), "stale_users")
	if err != nil || *ind.Value != 3 || hasRecord(ind, "dave") || !hasRecord(ind, "sam") {
		t.Fatalf("stale users from the directory: %+v %v", ind, err)
	}
}
