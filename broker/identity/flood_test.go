package identity

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// throttleOf returns the throttle newTestService gave the service.
func throttleOf(s *Service) *audit.Throttle { return s.rejections.(*audit.Throttle) }

// refusalRecords splits the denied records of action into single ones
// and summaries (decoded details).
func refusalRecords(t *testing.T, st broker.Store, action string) (single []broker.AuditRecord, sums []map[string]any) {
	t.Helper()
	for _, r := range auditRecords(t, st, action) {
		if r.Action != action || r.Outcome != broker.OutcomeDenied {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(r.Details, &d); err != nil {
			t.Fatal(err)
		}
		if d["summary"] == true {
			sums = append(sums, d)
		} else {
			single = append(single, r)
		}
	}
	return single, sums
}

// TestBlockedSignInsSummarized: wrong credentials are audited one record
// each (the limiter bounds them); once the address is blocked, a hundred
// more attempts become five records and one summary.
func TestBlockedSignInsSummarized(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC))
	s, _ := newTestService(t, clk)
	st := s.tokens.store
	for _, u := range []string{"zed", "yan", "xi"} { // max_failures is 3
		if _, _, err := s.Login(ctx, u, "guess", "", "192.0.2.9"); CodeOf(err) != CodeLoginFailed {
			t.Fatalf("failure for %s: %v", u, err)
		}
	}
	for i := range 100 {
		if _, _, err := s.Login(ctx, "alice", "alice-pw", "", "192.0.2.9"); CodeOf(err) != CodeTooManyAttempts {
			t.Fatalf("attempt %d from the blocked address: %v", i, err)
		}
		clk.Add(100 * time.Millisecond)
	}
	single, sums := refusalRecords(t, st, "auth.login")
	var failed, limited int
	for _, r := range single {
		switch {
		case strings.HasPrefix(r.Reason, "rate limited"):
			limited++
		case r.Reason == "unknown user":
			failed++
		}
	}
	if failed != 3 || limited != 5 || len(sums) != 0 {
		t.Fatalf("within the window: %d failures, %d rate-limit records, %d summaries; want 3, 5, 0", failed, limited, len(sums))
	}
	clk.Add(time.Minute)
	if err := throttleOf(s).FlushClosed(ctx); err != nil {
		t.Fatal(err)
	}
	_, sums = refusalRecords(t, st, "auth.login")
	if len(sums) != 1 || sums[0]["suppressed"] != 95.0 || sums[0]["source"] != "192.0.2.9" {
		t.Fatalf("summaries %+v, want one of 95 from 192.0.2.9", sums)
	}
	if acts, _ := sums[0]["actors"].(map[string]any); acts["alice"] != 95.0 {
		t.Errorf("summary actors %v", sums[0]["actors"])
	}
	recs := auditRecords(t, st, "auth.login")
	if last := recs[len(recs)-1]; last.Actor != "alice" || strings.Contains(string(last.Details), "alice-pw") {
		t.Errorf("summary record %+v", last)
	}
}

// TestRefusedTokensSummarized: a hundred bad bearer tokens from one
// address become five records naming the address and one summary; another
// address is counted apart.
func TestRefusedTokensSummarized(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC))
	s, _ := newTestService(t, clk)
	st := s.tokens.store
	ctx := audit.WithSource(context.Background(), "198.51.100.4")
	for i := range 100 {
		if _, err := s.VerifyToken(ctx, "cst_"+strings.Repeat("A", 43), KindAPI); CodeOf(err) != CodeTokenInvalid {
			t.Fatalf("refusal %d: %v", i, err)
		}
	}
	other := audit.WithSource(context.Background(), "198.51.100.5")
	if _, err := s.VerifyToken(other, "junk", KindWeb); CodeOf(err) != CodeTokenInvalid {
		t.Fatal(err)
	}
	single, sums := refusalRecords(t, st, "auth.token")
	if len(single) != 6 || len(sums) != 0 {
		t.Fatalf("%d records, %d summaries; want 6 and 0", len(single), len(sums))
	}
	var d map[string]any
	_ = json.Unmarshal(single[0].Details, &d)
	if d["source"] != "198.51.100.4" || single[0].Reason != "unknown token" || d["kind"] != "api" {
		t.Errorf("first record %+v", single[0])
	}
	_ = json.Unmarshal(single[5].Details, &d)
	if d["source"] != "198.51.100.5" || single[5].Reason != "malformed secret" {
		t.Errorf("record from the other address %+v", single[5])
	}
	if err := throttleOf(s).Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, sums = refusalRecords(t, st, "auth.token")
	if len(sums) != 1 || sums[0]["suppressed"] != 95.0 || sums[0]["source"] != "198.51.100.4" {
		t.Fatalf("summaries %+v", sums)
	}
}

// TestPurgeExpiredTokens: tokens expired longer than the retention are
// deleted, with one token.purge record; tokens expired more recently stay
// listed and still answer token_expired.
func TestPurgeExpiredTokens(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	st := openStore(t)
	tokens := NewTokens(st, audit.NewLog(st), clk.Now)
	issue := func(user, kind, target string, ttl time.Duration) (string, broker.Token) {
		secret, tok, err := tokens.Issue(ctx, user, kind, target, ttl, "10.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return secret, tok
	}
	oldSecret, old := issue("alice", KindAPI, "", time.Hour) // expires t0+1h
	_, oldDB := issue("bob", KindDB, "db1", 15*time.Minute)
	recentSecret, recent := issue("alice", KindWeb, "", 3*24*time.Hour) // expires t0+3d
	_, live := issue("alice", KindAPI, "", 30*24*time.Hour)

	clk.Set(t0.Add(8 * 24 * time.Hour))
	n, err := tokens.PurgeExpired(ctx, clk.Now().Add(-7*24*time.Hour)) // before t0+1d
	if err != nil || n != 2 {
		t.Fatalf("PurgeExpired = %d, %v; want 2", n, err)
	}
	list, err := tokens.List(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].ID != live.ID && list[1].ID != live.ID {
		t.Fatalf("alice's tokens after the purge: %+v, %v", list, err)
	}
	for _, id := range []string{old.ID, oldDB.ID} {
		_ = st.View(ctx, func(tx broker.Tx) error {
			if _, err := tx.GetToken(id); err == nil {
				t.Errorf("token %s survived the purge", id)
			}
			return nil
		})
	}
	if _, err := tokens.Verify(ctx, oldSecret, KindAPI); CodeOf(err) != CodeTokenInvalid {
		t.Errorf("purged token: %v, want token_invalid", err)
	}
	if _, err := tokens.Verify(ctx, recentSecret, KindWeb); CodeOf(err) != CodeTokenExpired {
		t.Errorf("token expired within the retention: %v, want token_expired", err)
	}
	recs := auditRecords(t, st, "token.purge")
	if len(recs) != 1 || recs[0].Actor != "system" || recs[0].Outcome != broker.OutcomeSuccess {
		t.Fatalf("token.purge records %+v", recs)
	}
	var d map[string]any
	_ = json.Unmarshal(recs[0].Details, &d)
	if d["deleted"] != 2.0 || d["expired_before"] != "2026-01-06T12:00:00Z" {
		t.Errorf("token.purge details %s", recs[0].Details)
	}
	for _, leak := range []string{oldSecret, old.Hash, old.ID, recent.ID} {
		if strings.Contains(string(recs[0].Details)+recs[0].Reason, leak) {
			t.Errorf("token.purge record names %q", leak)
		}
	}
	// Nothing more to delete: no record.
	if n, err := tokens.PurgeExpired(ctx, clk.Now().Add(-7*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second purge = %d, %v", n, err)
	}
	if recs := auditRecords(t, st, "token.purge"); len(recs) != 1 {
		t.Errorf("%d token.purge records after an empty purge, want 1", len(recs))
	}
	verifyChain(t, st)
}

// TestRunPurgesAtStart: Service.Run purges as soon as it starts, with the
// default retention of seven days.
func TestRunPurgesAtStart(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	s, _ := newTestService(t, clk)
	_, gone, err := s.tokens.Issue(t.Context(), "alice", KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	_, kept, err := s.tokens.Issue(t.Context(), "alice", KindAPI, "", 2*time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(DefaultTokenRetention + 90*time.Minute)) // gone expired 7d30m ago, kept 7d-30m ago
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(auditRecords(t, s.tokens.store, "token.purge")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no token.purge record after 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	list, err := s.ListTokens(t.Context(), "alice")
	if err != nil || len(list) != 1 || list[0].ID != kept.ID {
		t.Fatalf("tokens after Run: %+v, %v (purged %s)", list, err, gone.ID)
	}
}
