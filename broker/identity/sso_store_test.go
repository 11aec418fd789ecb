package identity

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// newSSOService is a service with single sign-on over st (the provider is
// never contacted: sign-ins are handed in as mapped users).
func newSSOService(t *testing.T, st broker.Store, clk *clock, tweak ...func(*config.OIDC)) *Service {
	t.Helper()
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOS_TEST_SSO_SECRET", "x")
	oc := config.OIDC{Issuer: "https://idp.example", ClientID: "custos", ClientSecret: "env:CUSTOS_TEST_SSO_SECRET",
		LinkLocalUsers: []string{"sam"}, GroupMap: map[string]string{"idp-dba": "dba"}}
	for _, f := range tweak {
		f(&oc)
	}
	o, err := NewOIDC(oc, "https://custos.example/auth/oidc/callback", clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: audit.NewLog(st), SSO: o, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SSO users survive a restart (their tokens and groups stay valid), are
// known on another replica sharing the store, and a user name stays bound
// to the provider subject that first used it.
func TestSSOUsersPersist(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Unix(1700000000, 0).UTC())
	st := openStore(t)
	a := newSSOService(t, st, clk)
	zed := SSOUser{Identity: Identity{Name: "zed", Groups: []string{"dba"}}, ProviderGroups: []string{"idp-dba"},
		Issuer: "https://idp.example", Subject: "sub-zed"}
	secret, tok, err := a.loginSSO(ctx, zed, KindAPI, 0, "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AuthMethod != MethodSSO || !a.dir.InGroup("zed", "dba") {
		t.Fatalf("token %+v, groups %v", tok, a.dir.GroupsOf("zed"))
	}
	recs := auditRecords(t, st, "auth.login")
	var det map[string]any
	if len(recs) == 1 {
		_ = json.Unmarshal(recs[0].Details, &det)
	}
	if len(recs) != 1 || recs[0].Actor != "zed" || det["subject"] != "sub-zed" || det["auth_method"] != MethodSSO {
		t.Fatalf("auth.login record: %+v", recs)
	}

	// A replica (or the broker after a restart) that has not seen the
	// sign-in: the token is accepted once the stored users are read.
	b := newSSOService(t, st, clk)
	clk.Add(3 * time.Second)
	if got, err := b.VerifyToken(ctx, secret, KindAPI); err != nil || got.User != "zed" {
		t.Fatalf("token on the other replica: %+v, %v", got, err)
	}
	if !b.dir.InGroup("zed", "dba") {
		t.Error("groups lost across replicas")
	}
	c := newSSOService(t, st, clk)
	if n, err := c.LoadSSOUsers(ctx); err != nil || n != 1 || !c.dir.Enabled("zed") {
		t.Fatalf("load at start: %d, %v", n, err)
	}

	// A start with the mapping gone maps the stored provider groups anew:
	// zed keeps signing in but is no longer in dba. Out of allowed_groups,
	// or with SSO gone from the config, zed is not admitted at all (and the
	// start-up sweep ends zed's access).
	unmapped := newSSOService(t, st, clk, func(o *config.OIDC) { o.GroupMap = nil })
	if _, err := unmapped.LoadSSOUsers(ctx); err != nil || !unmapped.dir.Enabled("zed") || unmapped.dir.InGroup("zed", "dba") {
		t.Errorf("group_map removed: enabled %v, groups %v, %v", unmapped.dir.Enabled("zed"), unmapped.dir.GroupsOf("zed"), err)
	}
	barred := newSSOService(t, st, clk, func(o *config.OIDC) { o.AllowedGroups = []string{"idp-other"} })
	if n, err := barred.LoadSSOUsers(ctx); err != nil || n != 0 || barred.dir.Enabled("zed") {
		t.Errorf("allowed_groups narrowed: %d loaded, %v", n, err)
	}
	cfgNoSSO, _ := testConfig(t)
	dNoSSO, _ := NewDirectory(cfgNoSSO)
	noSSO, err := NewService(Options{Auth: cfgNoSSO.Auth, Directory: dNoSSO, Store: st, Audit: audit.NewLog(st), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := noSSO.LoadSSOUsers(ctx); n != 0 || noSSO.dir.Enabled("zed") {
		t.Errorf("identity.oidc removed: %d loaded", n)
	}
	if _, err := noSSO.VerifyToken(ctx, secret, KindAPI); CodeOf(err) != CodeTokenInvalid {
		t.Errorf("zed's token without SSO configured: %v", err)
	}

	// Another subject taking the name zed (renamed at the provider).
	imp := zed
	imp.Subject = "sub-mallory"
	if _, _, err := a.loginSSO(ctx, imp, KindAPI, 0, "10.0.0.66"); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("another subject with zed's name: %v", err)
	}
	// A local user, not linked: refused, nothing stored.
	alice := SSOUser{Identity: Identity{Name: "alice", Groups: []string{"security"}}, Issuer: "https://idp.example", Subject: "sub-x"}
	if _, _, err := a.loginSSO(ctx, alice, KindAPI, 0, "10.0.0.66"); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("local user alice through sso: %v", err)
	}
	if a.dir.IsSecurityAdmin("alice") {
		t.Fatal("the provider made a local user a security admin")
	}
	// A linked local user keeps their account and gains mapped groups.
	sam := SSOUser{Identity: Identity{Name: "sam", Groups: []string{"dba"}}, Issuer: "https://idp.example", Subject: "sub-sam"}
	if _, tok, err := a.loginSSO(ctx, sam, KindAPI, 0, "10.0.0.7"); err != nil || tok.User != "sam" || !a.dir.InGroup("sam", "dba") || !a.dir.IsSecurityAdmin("sam") {
		t.Fatalf("linked sam: %+v, %v", tok, err)
	}
}
