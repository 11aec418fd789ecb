package identity

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

func TestTokensLifecycle(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	tokens := NewTokens(st, audit.NewLog(st), clk.Now)

	secret, tok, err := tokens.Issue(ctx, "alice", KindAPI, "", time.Hour, "10.0.0.7")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^cst_[A-Za-z0-9_-]{43}$`).MatchString(secret) {
		t.Fatalf("secret %q is not cst_ + 32 bytes of base64url", secret)
	}
	if tok.Hash != HashToken(secret) || strings.Contains(tok.Hash, secret[4:]) || !tok.ExpiresAt.Equal(t0.Add(time.Hour)) ||
		tok.User != "alice" || tok.Kind != KindAPI || tok.Source != "10.0.0.7" || !strings.HasPrefix(tok.ID, "tok_") {
		t.Fatalf("token = %+v", tok)
	}
	other, _, err := tokens.Issue(ctx, "alice", KindAPI, "", time.Hour, "")
	if err != nil || other == secret {
		t.Fatalf("second secret %v, equal to the first: %v", err, other == secret)
	}

	// Expiry boundary: valid until the instant before ExpiresAt.
	clk.Set(tok.ExpiresAt.Add(-time.Nanosecond))
	got, err := tokens.Verify(ctx, secret, KindAPI)
	if err != nil || got.ID != tok.ID || got.User != "alice" {
		t.Fatalf("verify just before expiry: %+v, %v", got, err)
	}
	clk.Set(tok.ExpiresAt)
	if _, err := tokens.Verify(ctx, secret, KindAPI); CodeOf(err) != CodeTokenExpired {
		t.Fatalf("verify at expiry: %v", err)
	}
	clk.Set(t0)

	for name, s := range map[string]string{
		"wrong kind":       secret,
		"unknown":          "cst_" + strings.Repeat("A", 43),
		"no prefix":        secret[4:],
		"truncated":        secret[:len(secret)-1],
		"empty":            "",
		"surrounding junk": secret + " ",
	} {
		kind := KindAPI
		if name == "wrong kind" {
			kind = KindWeb
		}
		if _, err := tokens.Verify(ctx, s, kind); CodeOf(err) != CodeTokenInvalid {
			t.Errorf("%s: err = %v, want token_invalid", name, err)
		}
	}

	if _, _, err := tokens.Issue(ctx, "bob", KindDB, "prod-db", 15*time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	list, err := tokens.List(ctx, "alice")
	if err != nil || len(list) != 2 {
		t.Fatalf("List(alice) = %d tokens, %v", len(list), err)
	}
	for _, l := range list {
		if l.Hash != "" || l.User != "alice" {
			t.Fatalf("listed %+v", l)
		}
	}

	// Another user's token looks missing.
	if err := tokens.Revoke(ctx, tok.ID, "bob"); CodeOf(err) != CodeNotFound {
		t.Fatalf("revoke by bob: %v", err)
	}
	if _, err := tokens.Verify(ctx, secret, KindAPI); err != nil {
		t.Fatalf("token gone after a refused revoke: %v", err)
	}
	if err := tokens.Revoke(ctx, tok.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Verify(ctx, secret, KindAPI); CodeOf(err) != CodeTokenInvalid {
		t.Fatalf("verify after revoke: %v", err)
	}
	if err := tokens.Revoke(ctx, tok.ID, "alice"); CodeOf(err) != CodeNotFound {
		t.Fatalf("second revoke: %v", err)
	}

	// Every issue and revocation is audited; no record holds a secret.
	recs := auditRecords(t, st, "token.")
	var got2 []string
	for _, r := range recs {
		got2 = append(got2, r.Actor+" "+r.Action+" "+r.Outcome)
		if strings.Contains(string(r.Details)+r.Reason, secret[4:]) {
			t.Fatalf("audit record %d holds the secret", r.Seq)
		}
	}
	want := []string{"alice token.issue success", "alice token.issue success", "bob token.issue success",
		"bob token.revoke denied", "alice token.revoke success", "alice token.revoke denied"}
	if strings.Join(got2, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit:\n%s\nwant:\n%s", strings.Join(got2, "\n"), strings.Join(want, "\n"))
	}
	verifyChain(t, st)
}

func TestIssueRefusesBadArguments(t *testing.T) {
	st := openStore(t)
	tokens := NewTokens(st, audit.NewLog(st), nil)
	for name, f := range map[string]func() error{
		"no user": func() error {
			_, _, err := tokens.Issue(context.Background(), "", KindAPI, "", time.Hour, "")
			return err
		},
		"unknown kind": func() error {
			_, _, err := tokens.Issue(context.Background(), "a", "root", "", time.Hour, "")
			return err
		},
		"db without target": func() error {
			_, _, err := tokens.Issue(context.Background(), "a", KindDB, "", time.Hour, "")
			return err
		},
		"zero ttl": func() error { _, _, err := tokens.Issue(context.Background(), "a", KindAPI, "", 0, ""); return err },
	} {
		if err := f(); CodeOf(err) != CodeBadRequest {
			t.Errorf("%s: %v", name, err)
		}
	}
	var n int
	_ = st.View(context.Background(), func(tx broker.Tx) error {
		l, err := tx.ListTokens("a")
		n = len(l)
		return err
	})
	if n != 0 {
		t.Fatalf("%d tokens stored by refused calls", n)
	}
}
