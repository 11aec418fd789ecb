package access_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// TestRevokeDisabled: after a restart with alice disabled in config, her
// grant is no longer found for connecting, RevokeDisabled revokes it
// (announcing the grant event proxies end sessions on) and cancels her
// pending request, each with a system audit record; bob's grant stays.
func TestRevokeDisabled(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := newClock()
	service := func(disabled ...string) *access.Service {
		t.Helper()
		cfg, err := config.Parse([]byte(strings.Replace(testConfig, "{name: mallory}]", "{name: mallory}, {name: dave}]", 1)))
		if err != nil {
			t.Fatal(err)
		}
		for i := range cfg.Users {
			for _, d := range disabled {
				if cfg.Users[i].Name == d {
					cfg.Users[i].Disabled = true
				}
			}
		}
		cfg.Groups[0].Members = append(cfg.Groups[0].Members, "dave") // dbas
		dir, err := identity.NewDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return access.New(access.Options{Config: cfg, Directory: dir, Store: st, Audit: audit.NewLog(st), Now: c.now})
	}
	before := service()
	grantFor := func(user string) broker.Grant {
		t.Helper()
		req, err := before.Create(ctx, user, access.NewRequest{Target: "db", Role: "ro", Duration: time.Hour, Reason: "INC-1"})
		if err != nil {
			t.Fatal(err)
		}
		_, g, err := before.Decide(ctx, "bob", req.ID, access.Decision{Approve: true})
		if err != nil || g == nil {
			t.Fatalf("approve: %v", err)
		}
		return *g
	}
	aliceGrant, daveGrant := grantFor("alice"), grantFor("dave")
	pending, err := before.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "rw", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	after := service("alice")
	if _, err := after.ActiveGrantAs(ctx, "alice", "db", ""); code(err) != "user_disabled" {
		t.Fatalf("active grant of a disabled user: %v, want user_disabled", err)
	}
	evCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := st.GrantEvents(evCtx)
	d, err := after.RevokeDisabled(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Grants) != 1 || d.Grants[0].ID != aliceGrant.ID || d.Grants[0].State != broker.GrantRevoked || d.Grants[0].RevokedBy != "system" {
		t.Fatalf("revoked grants %+v, want alice's", d.Grants)
	}
	if len(d.Requests) != 1 || d.Requests[0].ID != pending.ID || d.Requests[0].State != broker.RequestCancelled {
		t.Fatalf("cancelled requests %+v, want alice's pending one", d.Requests)
	}
	select {
	case ev := <-events:
		if ev.GrantID != aliceGrant.ID || ev.State != broker.GrantRevoked || !strings.Contains(ev.Reason, "disabled") {
			t.Fatalf("grant event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no grant event: live sessions would not end")
	}
	if g, err := after.ActiveGrantAs(ctx, "dave", "db", ""); err != nil || g.ID != daveGrant.ID {
		t.Fatalf("dave's grant: %v %v", g, err)
	}
	acts := strings.Join(auditActions(t, st), " ")
	if !strings.Contains(acts, "grant.revoke:success") || !strings.Contains(acts, "request.cancel:success") {
		t.Fatalf("audit actions %s", acts)
	}
	if again, err := after.RevokeDisabled(ctx); err != nil || len(again.Grants)+len(again.Requests) != 0 {
		t.Fatalf("second run: %+v %v", again, err)
	}
}

// A security admin disabled in config is no security admin any more.
func TestDisabledSecurityAdmin(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, disabled := range []bool{false, true} {
		cfg, err := config.Parse([]byte(testConfig))
		if err != nil {
			t.Fatal(err)
		}
		for i := range cfg.Users {
			if cfg.Users[i].Name == "sam" {
				cfg.Users[i].Disabled = disabled
			}
		}
		dir, err := identity.NewDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := access.New(access.Options{Config: cfg, Directory: dir, Store: st, Audit: audit.NewLog(st)})
		if got := s.IsSecurityAdmin("sam"); got == disabled {
			t.Errorf("sam disabled=%v: IsSecurityAdmin = %v", disabled, got)
		}
	}
}
