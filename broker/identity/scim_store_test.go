package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/audit"
)

// TestSCIMAcrossReplicas: a user provisioned through one broker is known
// to another sharing the store as soon as a token names them (no wait for
// the periodic refresh); once deactivated through the first, the second
// refuses their token and an SSO sign-in under their name, and the first
// never took a name of the config (disabled mallory).
func TestSCIMAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	cfg, _ := testConfig(t)
	st := openStore(t)
	newService := func() *Service {
		d, err := NewDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: audit.NewLog(st), Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := newService(), newService()
	set := func(active bool) {
		t.Helper()
		if err := a.SCIMUpdate(ctx, func(sc *SCIMState) error {
			sc.Users["u1"] = &SCIMUser{ID: "u1", UserName: "dave", Active: active}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set(true)
	// A rename takes away what the old name holds.
	old, _, err := a.Tokens().Issue(ctx, "dave", KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SCIMUpdate(ctx, func(sc *SCIMState) error { sc.Users["u1"].UserName = "dave2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Tokens().Verify(ctx, old, KindAPI); CodeOf(err) != CodeTokenInvalid || a.dir.Enabled("dave") || !a.dir.Enabled("dave2") {
		t.Fatalf("after rename: token %v, dave %v", err, a.dir.Enabled("dave"))
	}
	if recs := auditRecords(t, st, "token.revoke"); len(recs) != 1 || !strings.Contains(recs[0].Reason, "renamed to dave2") {
		t.Fatalf("rename: token.revoke records %+v", recs)
	}
	set(true)
	if err := a.SCIMUpdate(ctx, func(sc *SCIMState) error {
		sc.Users["u2"] = &SCIMUser{ID: "u2", UserName: "mallory", Active: true}
		return nil
	}); CodeOf(err) != "uniqueness" {
		t.Fatalf("SCIM user named like disabled mallory: %v", err)
	}
	tok, _, err := a.Tokens().Issue(ctx, "dave", KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Second)
	if _, err := b.VerifyToken(ctx, tok, KindAPI); err != nil {
		t.Fatalf("replica b, dave's token: %v", err)
	}
	if err := b.dir.checkSSOName("dave", false); err != nil {
		t.Fatalf("sso as provisioned dave: %v", err)
	}
	set(false)
	if _, err := b.VerifyToken(ctx, tok, KindAPI); CodeOf(err) != CodeTokenInvalid {
		t.Fatalf("replica b after deactivation: %v", err)
	}
	if err := b.LoadSCIM(ctx); err != nil {
		t.Fatal(err)
	}
	if b.dir.Enabled("dave") || b.dir.checkSSOName("dave", false) == nil {
		t.Fatal("replica b: deactivated dave still enabled or may sign in by SSO")
	}
	// An older state (an update that finished later) does not revive him.
	now, err := a.SCIMView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	older := now.clone()
	older.Version--
	older.Users["u1"].Active = true
	a.applySCIM(older)
	if a.dir.Enabled("dave") {
		t.Fatal("an older SCIM state was installed over a newer one")
	}
	// An SSO user of that name admitted earlier counts for nothing.
	_ = b.dir.admitSSO(Identity{Name: "dave", Groups: []string{"dba"}}, false)
	if b.dir.Enabled("dave") || b.dir.InGroup("dave", "dba") {
		t.Fatal("SSO entry revives a deactivated SCIM user")
	}
}

// TestSCIMNameTakenByConfigLater: a SCIM user whose name the config takes
// later blocks no other SCIM change, and deactivating them leaves the
// config user's tokens alone.
func TestSCIMNameTakenByConfigLater(t *testing.T) {
	ctx := context.Background()
	cfg, _ := testConfig(t)
	st := openStore(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: audit.NewLog(st)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SCIMUpdate(ctx, func(sc *SCIMState) error {
		sc.Users["u1"] = &SCIMUser{ID: "u1", UserName: "zed", Active: true}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cfg2, _ := testConfig(t)
	cfg2.Users = append(cfg2.Users, cfg2.Users[0])
	cfg2.Users[len(cfg2.Users)-1].Name, cfg2.Users[len(cfg2.Users)-1].Email = "zed", ""
	cfg2.Users[len(cfg2.Users)-1].SlackID, cfg2.Users[len(cfg2.Users)-1].SSHKeys = "", nil
	if err := d.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.Tokens().Issue(ctx, "zed", KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SCIMUpdate(ctx, func(sc *SCIMState) error {
		sc.Users["u2"] = &SCIMUser{ID: "u2", UserName: "yan", Active: true}
		return nil
	}); err != nil {
		t.Fatalf("an unrelated change after the config took zed: %v", err)
	}
	if err := s.SCIMUpdate(ctx, func(sc *SCIMState) error { sc.Users["u1"].Active = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyToken(ctx, tok, KindAPI); err != nil || !d.Enabled("zed") {
		t.Fatalf("config user zed after the shadowed SCIM zed was deactivated: %v, enabled %v", err, d.Enabled("zed"))
	}
}
