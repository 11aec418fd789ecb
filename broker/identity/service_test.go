package identity

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

func newTestService(t *testing.T, clk *clock) (*Service, *config.Config) {
	t.Helper()
	cfg, _ := testConfig(t)
	cfg.Auth = config.Auth{TokenTTL: config.Duration(2 * time.Hour), MaxFailures: 3, FailureWindow: config.Duration(10 * time.Minute)}
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	log := audit.NewLog(st)
	s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: log, Now: clk.Now,
		Rejections: audit.NewThrottle(log, audit.ThrottleOptions{Now: clk.Now})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { verifyChain(t, st) })
	return s, cfg
}

func TestLogin(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1234567890, 0).UTC()
	clk := newClock(t0)
	s, _ := newTestService(t, clk)

	secret, tok, err := s.Login(ctx, "bob", "bob-pw", TOTP(rfcKey, t0), "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if tok.User != "bob" || tok.Kind != KindAPI || !tok.ExpiresAt.Equal(t0.Add(2*time.Hour)) || tok.Source != "10.0.0.1" {
		t.Fatalf("token = %+v", tok)
	}
	if got, err := s.VerifyToken(ctx, secret, KindAPI); err != nil || got.ID != tok.ID {
		t.Fatalf("VerifyToken: %+v, %v", got, err)
	}
	// The TOTP guard is the store-backed one: the code cannot be replayed.
	if _, _, err := s.Login(ctx, "bob", "bob-pw", TOTP(rfcKey, t0), "10.0.0.1"); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("replayed code: %v", err)
	}
	if _, _, err := s.Login(ctx, "alice", "wrong-pw", "", "10.0.0.2"); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("wrong password: %v", err)
	}

	recs := auditRecords(t, s.tokens.store, "auth.login")
	if len(recs) != 3 {
		t.Fatalf("%d auth.login records, want 3", len(recs))
	}
	var details map[string]any
	if err := json.Unmarshal(recs[0].Details, &details); err != nil || details["token_id"] != tok.ID || recs[0].Actor != "bob" || recs[0].Outcome != "success" {
		t.Fatalf("success record: %+v %v", recs[0], details)
	}
	for i, want := range []struct{ actor, reason string }{{"bob", "totp code already used"}, {"alice", "wrong password"}} {
		r := recs[i+1]
		if r.Actor != want.actor || r.Outcome != "denied" || r.Reason != want.reason {
			t.Errorf("failure record %d: %s %s %q", i, r.Actor, r.Outcome, r.Reason)
		}
		if strings.Contains(string(r.Details)+r.Reason, "pw") {
			t.Errorf("failure record %d mentions the password: %s %s", i, r.Reason, r.Details)
		}
	}
}

func TestLoginRateLimit(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	s, _ := newTestService(t, clk)
	login := func(user, pw, source string) string {
		_, _, err := s.Login(ctx, user, pw, "", source)
		return CodeOf(err)
	}

	// Per user: three failures from three addresses block alice everywhere.
	for i, addr := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		if c := login("alice", "guess", addr); c != CodeLoginFailed {
			t.Fatalf("failure %d: %q", i, c)
		}
		clk.Add(time.Minute)
	}
	if c := login("alice", "alice-pw", "10.0.0.4"); c != CodeTooManyAttempts {
		t.Fatalf("right password while blocked: %q", c)
	}
	// The block lifts exactly one window after the first failure.
	clk.Set(t0.Add(10*time.Minute - time.Nanosecond))
	if c := login("alice", "alice-pw", "10.0.0.4"); c != CodeTooManyAttempts {
		t.Fatalf("just before the window: %q", c)
	}
	clk.Set(t0.Add(10 * time.Minute))
	if c := login("alice", "alice-pw", "10.0.0.4"); c != "" {
		t.Fatalf("after the window: %q", c)
	}

	// Success resets the user's count: two more failures do not block.
	for range 2 {
		login("alice", "guess", "10.0.0.5")
	}
	if c := login("alice", "alice-pw", "10.0.0.6"); c != "" {
		t.Fatalf("after a reset and two failures: %q", c)
	}

	// Per address: one address spraying user names is blocked for every
	// user, including unknown ones, while other addresses are not.
	for _, u := range []string{"zed", "yan", "xi"} {
		login(u, "guess", "192.0.2.9")
	}
	if c := login("bob", "bob-pw", "192.0.2.9"); c != CodeTooManyAttempts {
		t.Fatalf("sprayed address: %q", c)
	}
	if c := login("alice", "alice-pw", "192.0.2.10"); c != "" {
		t.Fatalf("other address: %q", c)
	}

	// Without a source address only the user name counts.
	for _, u := range []string{"zed", "yan", "xi"} {
		login(u, "guess", "")
	}
	if c := login("bob", "bob-pw", ""); c != CodeLoginFailed { // bob has TOTP; no code given
		t.Fatalf("empty source is one shared key: %q", c)
	}

	// Refusals are audited too, as denied sign-ins naming the limit.
	var limited int
	for _, r := range auditRecords(t, s.tokens.store, "auth.login") {
		if strings.HasPrefix(r.Reason, "rate limited") {
			limited++
		}
	}
	if limited != 3 {
		t.Fatalf("%d rate-limit records, want 3", limited)
	}
}

func TestRevokeToken(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, newClock(time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)))
	secret, tok, err := s.Login(ctx, "alice", "alice-pw", "", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if list, err := s.ListTokens(ctx, "alice"); err != nil || len(list) != 1 || list[0].ID != tok.ID {
		t.Fatalf("ListTokens = %+v, %v", list, err)
	}
	if err := s.RevokeToken(ctx, tok.ID, "bob"); CodeOf(err) != CodeNotFound {
		t.Fatalf("bob revoking alice's token: %v", err)
	}
	if err := s.RevokeToken(ctx, tok.ID, "sam"); err != nil {
		t.Fatalf("security admin revoking: %v", err)
	}
	if _, err := s.VerifyToken(ctx, secret, KindAPI); CodeOf(err) != CodeTokenInvalid {
		t.Fatalf("verify after revoke: %v", err)
	}
}

func TestAuditName(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	got := auditName(long)
	if !strings.HasSuffix(got, "…") || len(got) > maxAuditedName+len("…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Fatalf("auditName(long) = %q", got)
	}
	if auditName("") != "anonymous" || auditName("bob") != "bob" {
		t.Fatal("auditName short names")
	}
}

func TestNewServiceRequires(t *testing.T) {
	if _, err := NewService(Options{}); err == nil {
		t.Fatal("NewService without a store accepted")
	}
}
