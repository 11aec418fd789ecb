package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var testclockBin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// testclockBinary builds custos with the custos_testclock tag once: its
// wall clock for grant ends is the system's plus the offset in the file
// $CUSTOS_TESTCLOCK_FILE names; its monotonic clock is the system's.
func testclockBinary(t *testing.T) string {
	t.Helper()
	testclockBin.once.Do(func() {
		testclockBin.path = filepath.Join(filepath.Dir(custosBin), "custos-testclock")
		testclockBin.out, testclockBin.err = exec.Command("go", "build", "-tags", "custos_testclock", "-o", testclockBin.path, ".").CombinedOutput()
	})
	if testclockBin.err != nil {
		t.Fatalf("build custos with custos_testclock: %v\n%s", testclockBin.err, testclockBin.out)
	}
	return testclockBin.path
}

// TestClockJump steps the broker's wall clock during grants, with a real
// psql session through the proxy each time, and the broker's monotonic
// clock left alone, as a real step (an administrator's `date -s`, a bad
// time source) does.
//
// Forward by an hour during a two-minute grant: the grant is over by the
// wall clock, so the session ends within about a second of the step,
// early by the step and no more. Back by an hour during a 20-second
// grant: the session still ends when the grant's 20 seconds are really
// over, not an hour later (nor an hour early: the grant seems not yet
// started by the stepped clock, but it is running); the grant is expired
// in the store then, and grant.expire records how much the wall clock
// still showed left.
func TestClockJump(t *testing.T) {
	offset := filepath.Join(t.TempDir(), "clock-offset")
	step := func(d string) time.Time {
		if err := os.WriteFile(offset+".tmp", []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(offset+".tmp", offset); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	step("0s")
	t.Setenv("CUSTOS_TESTCLOCK_FILE", offset)
	s := startFullStack(t, stackOptions{bin: testclockBinary(t)})
	b := s.b
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Forward.
	fwd := s.grant("demo-pg", "readonly", "2m")
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	done := runLongPsql(ctx, t, s.pgPort, token)
	waitStatement(ctx, t, s.pg, "select pg_sleep(40)", b)
	steppedAt := step("1h")
	select {
	case out := <-done:
		took := time.Since(steppedAt)
		t.Logf("clock stepped forward 1h: session ended %v after the step: %q", took, out)
		if !strings.Contains(out, "access revoked: grant expired") {
			t.Errorf("psql after the clock stepped forward: %q\nbroker log:\n%s", out, b.logs)
		}
		if took > 2500*time.Millisecond {
			t.Errorf("session ended %v after the clock stepped forward past its end, want within about a second", took)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("psql still running 30s after the clock stepped forward past its grant's end\nbroker log:\n%s", b.logs)
	}
	waitState(t, b, "alice", fwd.ID, "expired", time.Now().Add(2*time.Second))
	step("0s")

	// Back.
	back := s.grant("demo-pg", "readonly", "20s")
	token = strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	done = runLongPsql(ctx, t, s.pgPort, token)
	waitStatement(ctx, t, s.pg, "select pg_sleep(40)", b)
	time.Sleep(2 * time.Second)
	step("-1h")
	select {
	case out := <-done:
		late := time.Since(back.EndsAt)
		t.Logf("clock stepped back 1h: session ended %v after the grant's real end: %q", late, out)
		// The broker ends it, with its reason: Vault, which keeps real
		// time too, holds the login a grace past the grant's end.
		early := -200 * time.Millisecond
		if !strings.Contains(out, "access revoked: grant expired") {
			t.Errorf("psql after the clock stepped back: %q\nbroker log:\n%s", out, b.logs)
		}
		if late < early || late > 1500*time.Millisecond {
			t.Errorf("session ended %v after its grant's real end, want at it", late)
		}
	case <-time.After(time.Until(back.EndsAt) + 30*time.Second):
		t.Fatalf("psql still running 30s after its grant's real end, with the clock stepped back\nbroker log:\n%s", b.logs)
	}
	waitState(t, b, "alice", back.ID, "expired", back.EndsAt.Add(2*time.Second))
	if out, err := s.psql(token, "select 1"); err == nil {
		t.Fatalf("connected after the grant's real end, with the clock stepped back: %q", out)
	} else {
		t.Logf("new connection after the grant's real end: %q", out)
	}
	var left float64
	for _, r := range decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "grant.expire", "-o", "json")) {
		if r.Details["grant_id"] == back.ID {
			left, _ = r.Details["wall_clock_left_ms"].(float64)
		}
	}
	if left < float64((time.Hour - 30*time.Second).Milliseconds()) {
		t.Errorf("grant.expire of the grant ended with the clock stepped back: wall_clock_left_ms %v, want about an hour", left)
	}
	if !strings.Contains(b.logs.String(), "the clock was stepped back") {
		t.Errorf("broker did not log the step back:\n%s", b.logs)
	}
}
