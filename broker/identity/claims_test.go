package identity

import (
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

func TestMapClaims(t *testing.T) {
	base := config.OIDC{GroupMap: map[string]string{"idp-dbas": "dbas", "idp-approvers": "approvers", "idp-ops": "dbas"}}
	allowed := base
	allowed.AllowedGroups = []string{"idp-dbas"}
	custom := base
	custom.UsernameClaim, custom.GroupsClaim, custom.EmailClaim = "upn", "roles", "mail"
	cases := []struct {
		name       string
		cfg        config.OIDC
		claims     map[string]any
		wantName   string
		wantGroups []string
		wantEmail  string
		wantMFA    bool
		refused    bool
	}{
		{name: "mapped groups, unmapped ignored", cfg: base,
			claims:   map[string]any{"preferred_username": "alice", "email": "a@x", "groups": []any{"idp-dbas", "idp-everyone"}},
			wantName: "alice", wantGroups: []string{"dbas"}, wantEmail: "a@x"},
		{name: "two provider groups onto one", cfg: base,
			claims:   map[string]any{"preferred_username": "alice", "groups": []any{"idp-ops", "idp-dbas", "idp-approvers"}},
			wantName: "alice", wantGroups: []string{"approvers", "dbas"}},
		{name: "single string group", cfg: base,
			claims:   map[string]any{"preferred_username": "bob", "groups": "idp-approvers"},
			wantName: "bob", wantGroups: []string{"approvers"}},
		{name: "no groups claim", cfg: base, claims: map[string]any{"preferred_username": "bob"}, wantName: "bob"},
		{name: "a group claim of another type grants nothing", cfg: base,
			claims: map[string]any{"preferred_username": "bob", "groups": map[string]any{"idp-dbas": true}}, wantName: "bob"},
		{name: "configured claim names", cfg: custom,
			claims:   map[string]any{"preferred_username": "ignored", "upn": "carol@corp", "mail": "c@corp", "roles": []any{"idp-dbas"}},
			wantName: "carol@corp", wantGroups: []string{"dbas"}, wantEmail: "c@corp"},
		{name: "amr with a second factor", cfg: base,
			claims:   map[string]any{"preferred_username": "dave", "amr": []any{"pwd", "otp"}},
			wantName: "dave", wantMFA: true},
		{name: "amr password only", cfg: base,
			claims: map[string]any{"preferred_username": "dave", "amr": []any{"pwd"}}, wantName: "dave"},
		{name: "allowed group member", cfg: allowed,
			claims: map[string]any{"preferred_username": "alice", "groups": []any{"idp-dbas"}}, wantName: "alice", wantGroups: []string{"dbas"}},
		{name: "outside allowed groups", cfg: allowed,
			claims: map[string]any{"preferred_username": "eve", "groups": []any{"idp-approvers"}}, refused: true},
		{name: "missing user name", cfg: base, claims: map[string]any{"email": "x@y"}, refused: true},
		{name: "user name not a string", cfg: base, claims: map[string]any{"preferred_username": 42.0}, refused: true},
		{name: "user name with a space", cfg: base, claims: map[string]any{"preferred_username": "alice admin"}, refused: true},
		{name: "user name with a newline", cfg: base, claims: map[string]any{"preferred_username": "alice\nforged"}, refused: true},
		{name: "user name with a slash", cfg: base, claims: map[string]any{"preferred_username": "../alice"}, refused: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := MapClaims(c.claims, c.cfg)
			if c.refused {
				if CodeOf(err) != CodeLoginFailed {
					t.Fatalf("got %+v, %v; want login_failed", u, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Name != c.wantName || !slices.Equal(u.Groups, c.wantGroups) || u.Email != c.wantEmail || u.MFA != c.wantMFA {
				t.Errorf("got name %q groups %v email %q mfa %v", u.Name, u.Groups, u.Email, u.MFA)
			}
		})
	}
}

// An SSO user named like a local user is refused unless the config links
// them; a linked one keeps the local groups and gains the mapped ones.
// Mapped groups count for policy (Members, InGroup), and the next sign-in
// replaces them.
func TestAdmitSSO(t *testing.T) {
	cfg := &config.Config{
		Users:  []config.User{{Name: "root-bg"}, {Name: "linda"}, {Name: "old", Disabled: true}},
		Groups: []config.Group{{Name: "dbas"}, {Name: "approvers", Members: []string{"linda"}}, {Name: "security", Members: []string{"root-bg"}}},
	}
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.admitSSO(Identity{Name: "root-bg", Groups: []string{"dbas"}}, false); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("collision with a local user: %v", err)
	}
	if err := d.admitSSO(Identity{Name: "old"}, true); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("disabled local user: %v", err)
	}
	if d.InGroup("root-bg", "dbas") {
		t.Fatal("a refused SSO sign-in changed the local user's groups")
	}
	if err := d.admitSSO(Identity{Name: "linda", Groups: []string{"dbas"}}, true); err != nil {
		t.Fatal(err)
	}
	if g := d.GroupsOf("linda"); !slices.Equal(g, []string{"approvers", "dbas"}) {
		t.Errorf("linked user groups %v", g)
	}
	if d.Enabled("alice") {
		t.Fatal("unknown SSO user enabled before sign-in")
	}
	if err := d.admitSSO(Identity{Name: "alice", Groups: []string{"dbas"}}, false); err != nil {
		t.Fatal(err)
	}
	if m, _ := d.Members("dbas"); !slices.Equal(m, []string{"alice", "linda"}) || !d.Enabled("alice") || !d.InGroup("alice", "dbas") {
		t.Errorf("dbas members %v", m)
	}
	_ = d.admitSSO(Identity{Name: "alice", Groups: nil}, false)
	if d.InGroup("alice", "dbas") {
		t.Error("a group removed at the provider still counts after the next sign-in")
	}
}

func TestCheckAuth(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tok := func(m string, ago time.Duration) broker.Token {
		return broker.Token{ID: "tok_1", AuthMethod: m, AuthTime: now.Add(-ago)}
	}
	cases := []struct {
		name string
		tok  broker.Token
		req  Requirement
		ok   bool
	}{
		{"no requirement", broker.Token{}, Requirement{}, true},
		{"password for one factor", tok(MethodPassword, time.Hour), Requirement{MinStrength: 1}, true},
		{"password for two factors", tok(MethodPassword, 0), Requirement{MinStrength: 2}, false},
		{"sso for two factors", tok(MethodSSO, 0), Requirement{MinStrength: 2}, false},
		{"sso+mfa for two factors", tok(MethodSSOMFA, 0), Requirement{MinStrength: 2}, true},
		{"password+totp for two factors", tok(MethodPasswordTOTP, 0), Requirement{MinStrength: 2}, true},
		{"unknown method", tok("", 0), Requirement{MinStrength: 1}, false},
		{"fresh enough", tok(MethodSSO, 4*time.Minute), Requirement{MaxAge: 5 * time.Minute}, true},
		{"too old", tok(MethodSSO, 6*time.Minute), Requirement{MaxAge: 5 * time.Minute}, false},
		{"no auth time", broker.Token{AuthMethod: MethodSSO}, Requirement{MaxAge: 5 * time.Minute}, false},
	}
	for _, c := range cases {
		err := CheckAuth(c.tok, c.req, now)
		if (err == nil) != c.ok || (err != nil && CodeOf(err) != CodeStepUp) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
