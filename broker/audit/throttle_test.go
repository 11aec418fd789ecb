package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// summary is the details of a summary record.
type summary struct {
	Summary     bool           `json:"summary"`
	Suppressed  int            `json:"suppressed"`
	Recorded    int            `json:"recorded"`
	Source      string         `json:"source"`
	WindowStart time.Time      `json:"window_start"`
	Window      string         `json:"window"`
	First       time.Time      `json:"first"`
	Last        time.Time      `json:"last"`
	Reasons     map[string]int `json:"reasons"`
	Actors      map[string]int `json:"actors"`
	Sources     map[string]int `json:"sources"`
	Overflow    bool           `json:"overflow"`
	AtShutdown  bool           `json:"at_shutdown"`
}

// split returns a store's records of action, the individual ones and the
// summaries (decoded), checking the chain on the way.
func split(t *testing.T, s broker.Store, action string) (single []broker.AuditRecord, sums []summary) {
	t.Helper()
	err := s.View(t.Context(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: action})
		for _, r := range recs {
			var d summary
			_ = json.Unmarshal(r.Details, &d)
			if !d.Summary {
				single = append(single, r)
				continue
			}
			if r.Outcome != broker.OutcomeDenied || r.Action != action {
				t.Errorf("summary record %+v", r)
			}
			sums = append(sums, d)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), s)
	if err != nil || !rep.OK {
		t.Fatalf("chain: %+v %v", rep, err)
	}
	return single, sums
}

func forged(i int) audit.Entry {
	return audit.Entry{Actor: "slack:unverified", Action: "slack.reject", Outcome: broker.OutcomeDenied,
		Reason: "invalid Slack signature", Details: map[string]any{"n": i}}
}

func newThrottle(t *testing.T, o audit.ThrottleOptions) (*audit.Throttle, broker.Store, *clock) {
	s := openStore(t)
	clk := &clock{t: t0}
	o.Now = clk.Now
	return audit.NewThrottle(audit.NewLog(s), o), s, clk
}

// TestThrottleFlood: 100 forged requests from one address within a
// minute become the first 5 records, as they were, and one summary of the
// other 95 once the window closes, not before.
func TestThrottleFlood(t *testing.T) {
	th, s, clk := newThrottle(t, audit.ThrottleOptions{})
	ctx := context.Background()
	for i := range 100 {
		if err := th.Record(ctx, "203.0.113.7", forged(i)); err != nil {
			t.Fatal(err)
		}
		clk.Add(500 * time.Millisecond)
	}
	single, sums := split(t, s, "slack.reject")
	if len(single) != 5 || len(sums) != 0 {
		t.Fatalf("within the window: %d records, %d summaries; want 5 and 0", len(single), len(sums))
	}
	for i, r := range single {
		if r.Actor != "slack:unverified" || r.Reason != "invalid Slack signature" || string(r.Details) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("record %d was not appended as given: %+v", i, r)
		}
	}
	// 50 s in: the window is still open.
	if err := th.FlushClosed(ctx); err != nil {
		t.Fatal(err)
	}
	if _, sums := split(t, s, "slack.reject"); len(sums) != 0 {
		t.Fatalf("summary before the window closed: %+v", sums)
	}
	clk.Add(10 * time.Second)
	if err := th.FlushClosed(ctx); err != nil {
		t.Fatal(err)
	}
	single, sums = split(t, s, "slack.reject")
	if len(single) != 5 || len(sums) != 1 {
		t.Fatalf("after the window: %d records, %d summaries; want 5 and 1", len(single), len(sums))
	}
	got := sums[0]
	want := summary{Summary: true, Suppressed: 95, Recorded: 5, Source: "203.0.113.7", WindowStart: t0, Window: "1m0s",
		First: t0.Add(5 * 500 * time.Millisecond), Last: t0.Add(99 * 500 * time.Millisecond),
		Reasons: map[string]int{"invalid Slack signature": 95}, Actors: map[string]int{"slack:unverified": 95}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("summary\n got %+v\nwant %+v", got, want)
	}
	if n := audit.KeysHeld(th); n != 0 {
		t.Errorf("%d keys held after the flush", n)
	}
	// Nothing left to flush, and the next refusal starts a new window.
	if err := th.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, sums := split(t, s, "slack.reject"); len(sums) != 1 {
		t.Errorf("%d summaries after Close, want still 1", len(sums))
	}
}

// TestThrottleKeys: refusals are counted per action and source address.
func TestThrottleKeys(t *testing.T) {
	th, s, clk := newThrottle(t, audit.ThrottleOptions{Burst: 2})
	ctx := context.Background()
	sends := []struct {
		action, source string
		n              int
	}{
		{"auth.token", "192.0.2.1", 7},
		{"auth.token", "192.0.2.2", 2},
		{"auth.login", "192.0.2.1", 4},
		{"auth.token", "", 3},
		// One IPv6 /64 is one key, whichever of its addresses is used.
		{"auth.token", "2001:db8:1:2::1", 1},
		{"auth.token", "2001:db8:1:2:ffff::9", 1},
		{"auth.token", "2001:db8:1:2::1234", 1},
		{"auth.token", "2001:db8:1:3::1", 1},
	}
	for _, x := range sends {
		for range x.n {
			if err := th.Record(ctx, x.source, audit.Entry{Actor: "anonymous", Action: x.action, Outcome: broker.OutcomeDenied, Reason: "unknown token"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	clk.Add(time.Minute)
	if err := th.FlushClosed(ctx); err != nil {
		t.Fatal(err)
	}
	single, sums := split(t, s, "auth.token")
	bySource := map[string]int{}
	for _, d := range sums {
		bySource[d.Source] = d.Suppressed
	}
	if len(single) != 2+2+2+2+1 || fmt.Sprint(bySource) != fmt.Sprint(map[string]int{"192.0.2.1": 5, "": 1, "2001:db8:1:2::/64": 1}) {
		t.Errorf("auth.token: %d records, summaries by source %v", len(single), bySource)
	}
	single, sums = split(t, s, "auth.login")
	if len(single) != 2 || len(sums) != 1 || sums[0].Suppressed != 2 || sums[0].Source != "192.0.2.1" {
		t.Errorf("auth.login: %d records, summaries %+v", len(single), sums)
	}
}

// TestThrottleNextWindow: a refusal after the window appends the
// summary of the window before it, then counts in a window of its own.
func TestThrottleNextWindow(t *testing.T) {
	th, s, clk := newThrottle(t, audit.ThrottleOptions{Burst: 1, Window: 10 * time.Second})
	ctx := context.Background()
	for range 3 {
		_ = th.Record(ctx, "198.51.100.1", forged(0))
	}
	clk.Add(10 * time.Second)
	for range 3 {
		_ = th.Record(ctx, "198.51.100.1", forged(1))
	}
	single, sums := split(t, s, "slack.reject")
	if len(single) != 2 || len(sums) != 1 || sums[0].Suppressed != 2 || !sums[0].WindowStart.Equal(t0) {
		t.Fatalf("%d records, summaries %+v; want 2 and one of 2", len(single), sums)
	}
	if err := th.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, sums = split(t, s, "slack.reject"); len(sums) != 2 || sums[1].Suppressed != 2 || !sums[1].AtShutdown {
		t.Fatalf("summaries after Close %+v", sums)
	}
}

// TestThrottleQuietWindow: a window that never reached the limit ends
// without a summary, and the key's next refusal is simply recorded.
func TestThrottleQuietWindow(t *testing.T) {
	th, s, clk := newThrottle(t, audit.ThrottleOptions{})
	ctx := context.Background()
	for i := range 2 {
		if err := th.Record(ctx, "198.51.100.2", forged(i)); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(2 * time.Minute)
	if err := th.Record(ctx, "198.51.100.2", forged(2)); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	if err := th.FlushClosed(ctx); err != nil {
		t.Fatal(err)
	}
	if err := th.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if single, sums := split(t, s, "slack.reject"); len(single) != 3 || len(sums) != 0 {
		t.Fatalf("%d records, summaries %+v; want 3 and none", len(single), sums)
	}
}

// TestThrottleShutdown: when Run's context ends, pending summaries are
// appended although their windows are still open, and later refusals are
// appended one each.
func TestThrottleShutdown(t *testing.T) {
	th, s, _ := newThrottle(t, audit.ThrottleOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { th.Run(ctx); close(done) }()
	for i := range 30 {
		if err := th.Record(ctx, "203.0.113.9", forged(i)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	single, sums := split(t, s, "slack.reject")
	if len(single) != 5 || len(sums) != 1 || sums[0].Suppressed != 25 || !sums[0].AtShutdown {
		t.Fatalf("%d records, summaries %+v; want 5 and one of 25 at shutdown", len(single), sums)
	}
	if err := th.Record(context.Background(), "203.0.113.9", forged(30)); err != nil {
		t.Fatal(err)
	}
	if single, _ := split(t, s, "slack.reject"); len(single) != 6 {
		t.Errorf("a refusal after shutdown was not appended: %d records", len(single))
	}
}

// TestThrottleMemoryCap: with MaxKeys reached, new sources share one
// overflow key per action, so memory stays bounded however many addresses
// an attacker uses, and every refusal is still accounted for.
func TestThrottleMemoryCap(t *testing.T) {
	th, s, clk := newThrottle(t, audit.ThrottleOptions{Burst: 1, MaxKeys: 2})
	ctx := context.Background()
	for i := range 500 {
		for range 2 {
			if err := th.Record(ctx, fmt.Sprintf("10.0.%d.%d", i/250, i%250), forged(i)); err != nil {
				t.Fatal(err)
			}
		}
		if n := audit.KeysHeld(th); n > 3 {
			t.Fatalf("%d keys held after %d sources, cap is 2 plus one overflow key", n, i+1)
		}
	}
	clk.Add(time.Minute)
	if err := th.FlushClosed(ctx); err != nil {
		t.Fatal(err)
	}
	single, sums := split(t, s, "slack.reject")
	total := len(single)
	var overflow *summary
	for i, d := range sums {
		total += d.Suppressed
		if d.Overflow {
			overflow = &sums[i]
		}
	}
	if total != 1000 {
		t.Errorf("%d refusals accounted for, want 1000", total)
	}
	// Sources 1 and 2 have keys (1 record + 1 summary of 1 each); the
	// other 498 share the overflow key: its first refusal is recorded and
	// 995 are summarized.
	if len(single) != 3 || len(sums) != 3 || overflow == nil || overflow.Suppressed != 995 || overflow.Source != "" {
		t.Fatalf("%d records, summaries %+v", len(single), sums)
	}
	if len(overflow.Sources) > 11 || overflow.Sources["(other)"] == 0 {
		t.Errorf("overflow sources tally is not bounded: %d entries", len(overflow.Sources))
	}
	if n := audit.KeysHeld(th); n != 0 {
		t.Errorf("%d keys held after the flush", n)
	}
}

// TestThrottleClosedWindowsMakeRoom: a key whose window has closed is
// summarized and dropped to make room before a new source overflows.
func TestThrottleClosedWindowsMakeRoom(t *testing.T) {
	th, s, clk := newThrottle(t, audit.ThrottleOptions{Burst: 1, MaxKeys: 1})
	ctx := context.Background()
	_ = th.Record(ctx, "192.0.2.1", forged(0))
	_ = th.Record(ctx, "192.0.2.1", forged(1))
	clk.Add(time.Minute)
	_ = th.Record(ctx, "192.0.2.2", forged(2))
	_ = th.Record(ctx, "192.0.2.2", forged(3))
	if err := th.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, sums := split(t, s, "slack.reject")
	if len(sums) != 2 || sums[0].Source != "192.0.2.1" || sums[0].AtShutdown || sums[1].Source != "192.0.2.2" || sums[1].Overflow {
		t.Fatalf("summaries %+v", sums)
	}
}

// TestThrottleTallyBounded: a summary counts at most ten distinct reasons
// and actors (attempted user names are attacker-chosen), the rest as
// "(other)", and clips long ones.
func TestThrottleTallyBounded(t *testing.T) {
	th, s, _ := newThrottle(t, audit.ThrottleOptions{Burst: 1})
	ctx := context.Background()
	long := strings.Repeat("x", 1000)
	for i := range 40 {
		e := audit.Entry{Actor: fmt.Sprintf("user%02d", i), Action: "auth.login", Outcome: broker.OutcomeDenied,
			Reason: fmt.Sprintf("rate limited: too many failed sign-ins for user user%02d", i)}
		if i == 1 {
			e.Actor = long
		}
		_ = th.Record(ctx, "192.0.2.5", e)
	}
	if err := th.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, sums := split(t, s, "auth.login")
	if len(sums) != 1 {
		t.Fatalf("summaries %+v", sums)
	}
	d := sums[0]
	if d.Suppressed != 39 || len(d.Actors) != 11 || d.Actors["(other)"] != 29 || len(d.Reasons) != 11 {
		t.Errorf("summary %+v", d)
	}
	for a := range d.Actors {
		if len(a) > 200 {
			t.Errorf("actor of %d bytes kept", len(a))
		}
	}
	var rec broker.AuditRecord
	_ = s.View(ctx, func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: "auth.login"})
		rec = recs[len(recs)-1]
		return err
	})
	if rec.Actor != audit.SummaryActor {
		t.Errorf("summary of many actors has actor %q, want %q", rec.Actor, audit.SummaryActor)
	}
}
