package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// replicaServices returns two sign-in services, as two brokers would run
// them, each with its own store handle on one shared database, and the
// password checkers behind them.
func replicaServices(t *testing.T, clk *clock) (a, b *Service, checks func() int, st broker.Store) {
	t.Helper()
	cfg, _ := testConfig(t)
	cfg.Auth = config.Auth{TokenTTL: config.Duration(2 * time.Hour), MaxFailures: 3, FailureWindow: config.Duration(10 * time.Minute)}
	path := filepath.Join(t.TempDir(), "custos.db")
	var pas []*PasswordAuthenticator
	svc := func() *Service {
		st, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		d, err := NewDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		log := audit.NewLog(st)
		pa := NewPasswordAuthenticator(d, StoreStepGuard{Store: st}, clk.Now)
		pas = append(pas, pa)
		s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: log, Now: clk.Now, Authenticator: pa,
			Rejections: audit.NewThrottle(log, audit.ThrottleOptions{Now: clk.Now, Store: st})})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b = svc(), svc()
	checks = func() int { return int(pas[0].Checks().Passwords + pas[1].Checks().Passwords) }
	return a, b, checks, a.store
}

// TestFailuresSplitAcrossReplicas is the attacker's test against two
// replicas behind a load balancer: failed sign-ins alternate between the
// brokers, so each alone sees fewer than auth.max_failures. The user is
// locked out on both all the same, and right credentials are refused on
// both until the window has passed.
func TestFailuresSplitAcrossReplicas(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	a, b, checks, _ := replicaServices(t, clk)
	ctx := context.Background()
	for i, s := range []*Service{a, b, a} {
		if _, _, err := s.Login(ctx, "alice", "wrong", "", fmt.Sprintf("198.51.100.%d", i)); CodeOf(err) != CodeLoginFailed {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	for name, s := range map[string]*Service{"a": a, "b": b} {
		if _, _, err := s.Login(ctx, "alice", "alice-pw", "", "203.0.113.9"); CodeOf(err) != CodeTooManyAttempts {
			t.Fatalf("replica %s after three failures split across replicas: %v, want too_many_attempts", name, err)
		}
	}
	if got := checks(); got != 3 {
		t.Fatalf("%d passwords checked, want 3", got)
	}
	clk.Add(10*time.Minute + time.Second)
	if _, _, err := b.Login(ctx, "alice", "alice-pw", "", "203.0.113.9"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// TestParallelGuessesBoundedAcrossReplicas: 200 wrong guesses sent at
// once, half to each replica, get at most auth.max_failures checks in
// all: the reservation is taken in the shared store before a password is
// looked at.
func TestParallelGuessesBoundedAcrossReplicas(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC))
	a, b, checks, _ := replicaServices(t, clk)
	done := make(chan int, 2)
	for _, s := range []*Service{a, b} {
		go func() {
			done <- parallelLogins(t, s, 100, fixed("alice"), func(i int) string { return fmt.Sprintf("guess-%d", i) }, fixed(""),
				func(i int) string { return fmt.Sprintf("198.51.100.%d", i) })
		}()
	}
	limited := <-done + <-done
	if got := checks(); got > 3 {
		t.Fatalf("%d password checks across two replicas, want at most 3", got)
	}
	if limited < 197 {
		t.Fatalf("%d attempts rate-limited, want at least 197", limited)
	}
}

// TestThrottleBoundedAcrossReplicas: a blocked address hammering both
// replicas gets the throttle's burst of individual records in all, not a
// burst per replica, and each replica adds at most one summary.
func TestThrottleBoundedAcrossReplicas(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC))
	a, b, _, st := replicaServices(t, clk)
	ctx := context.Background()
	const src = "198.51.100.7"
	for range 3 {
		_, _, _ = a.Login(ctx, "alice", "wrong", "", src)
	}
	for range 50 {
		for _, s := range []*Service{a, b} {
			if _, _, err := s.Login(ctx, "alice", "wrong", "", src); CodeOf(err) != CodeTooManyAttempts {
				t.Fatalf("blocked attempt: %v", err)
			}
		}
	}
	for _, s := range []*Service{a, b} {
		if err := s.rejections.(*audit.Throttle).Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var single, summaries, counted int
	for _, r := range auditRecords(t, st, "auth.login") {
		if r.Outcome != broker.OutcomeDenied || r.Reason == "wrong password" {
			continue
		}
		var d struct {
			Summary    bool `json:"summary"`
			Suppressed int  `json:"suppressed"`
		}
		if err := json.Unmarshal(r.Details, &d); err == nil && d.Summary {
			summaries++
			counted += d.Suppressed
			continue
		}
		single++
	}
	if single != audit.DefaultThrottleBurst {
		t.Errorf("%d rate-limit refusals recorded one by one across two replicas, want %d", single, audit.DefaultThrottleBurst)
	}
	if summaries > 2 || single+counted != 100 {
		t.Errorf("%d summaries counting %d refusals (+%d single), want at most 2 accounting for all 100", summaries, counted, single)
	}
	verifyChain(t, st)
}
