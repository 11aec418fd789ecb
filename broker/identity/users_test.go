package identity

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// TestUsersFactors: the users without a second factor are counted right
// across config users (password only, password+TOTP, no password,
// disabled), SSO users (with and without an MFA sign-in) and SCIM users
// (never signed in, signed in with MFA, deactivated), and last activity
// is recorded at most once a minute.
func TestUsersFactors(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	cfg, _ := testConfig(t) // alice password, bob password+totp, sam nothing, mallory disabled
	st := openStore(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: audit.NewLog(st), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	sso := func(name string, mfa bool) {
		t.Helper()
		u := SSOUser{Identity: Identity{Name: name}, Issuer: "https://idp", Subject: "s-" + name, MFA: mfa}
		if err := s.recordSSO(ctx, u, false); err != nil {
			t.Fatal(err)
		}
		if err := d.admitSSO(u.Identity, false); err != nil {
			t.Fatal(err)
		}
	}
	sso("carol", true)
	sso("erin", false)
	sso("frank", true)
	if err := s.SCIMUpdate(ctx, func(sc *SCIMState) error {
		for _, n := range []string{"dave", "frank", "gina"} {
			sc.Users["id-"+n] = &SCIMUser{ID: "id-" + n, UserName: n, Active: n != "gina"}
		}
		sc.Groups["g1"] = &SCIMGroup{ID: "g1", DisplayName: "dba", Members: []string{"id-dave"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.Tokens().Issue(ctx, "dave", KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyToken(ctx, tok, KindAPI); err != nil {
		t.Fatal(err)
	}
	first := clk.Now()
	clk.Add(30 * time.Second)
	if _, err := s.VerifyToken(ctx, tok, KindAPI); err != nil {
		t.Fatal(err)
	}

	users, err := s.Factors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		sources []string
		factors []string
		enabled bool
		second  bool
	}
	want := map[string]row{
		"alice":   {[]string{"config"}, []string{"password"}, true, false},
		"bob":     {[]string{"config"}, []string{"password", "totp"}, true, true},
		"sam":     {[]string{"config"}, []string{}, true, false},
		"mallory": {[]string{"config"}, []string{}, false, false},
		"carol":   {[]string{"sso"}, []string{"sso+mfa"}, true, true},
		"erin":    {[]string{"sso"}, []string{"sso"}, true, false},
		"frank":   {[]string{"scim", "sso"}, []string{"sso+mfa"}, true, true},
		"dave":    {[]string{"scim"}, []string{}, true, false},
		"gina":    {[]string{"scim"}, []string{}, false, false},
	}
	without := 0
	for _, u := range users {
		w, ok := want[u.Name]
		if !ok {
			t.Errorf("unexpected user %s", u.Name)
			continue
		}
		slices.Sort(u.Sources)
		if !slices.Equal(u.Sources, w.sources) || !slices.Equal(u.Factors, w.factors) || u.Enabled != w.enabled || u.SecondFactor != w.second {
			t.Errorf("%s: %+v, want %+v", u.Name, u, w)
		}
		if u.Enabled && !u.SecondFactor {
			without++
		}
		if u.Name == "dave" {
			if u.LastActivity == nil || !u.LastActivity.Equal(first) || !slices.Equal(u.Groups, []string{"dba"}) {
				t.Errorf("dave: last activity %v (want %v, written once a minute), groups %v", u.LastActivity, first, u.Groups)
			}
		} else if u.LastActivity != nil {
			t.Errorf("%s: last activity %v", u.Name, u.LastActivity)
		}
	}
	if len(users) != len(want) || without != 4 {
		t.Fatalf("%d users, %d enabled without a second factor (want %d, 4: alice, sam, erin, dave)", len(users), without, len(want))
	}
	clk.Add(31 * time.Second)
	if _, err := s.VerifyToken(ctx, tok, KindAPI); err != nil {
		t.Fatal(err)
	}
	var seen map[string]time.Time
	_ = st.View(ctx, func(tx broker.Tx) error { seen, err = readLastSeen(tx); return err })
	if !seen["dave"].Equal(clk.Now()) {
		t.Fatalf("after a minute: %v, want %v", seen["dave"], clk.Now())
	}
}
