package identity

import (
	"testing"

	"github.com/custos-pam/custos/broker/config"
)

// TestDirectoryReload: a reload replaces users and groups at once; one
// that cannot load (two users with one Slack ID) changes nothing.
func TestDirectoryReload(t *testing.T) {
	d, err := NewDirectory(&config.Config{Users: []config.User{{Name: "alice"}, {Name: "bob"}},
		Groups: []config.Group{{Name: "dbas", Members: []string{"alice"}}}})
	if err != nil {
		t.Fatal(err)
	}
	next := &config.Config{Users: []config.User{{Name: "bob"}, {Name: "dave"}},
		Groups: []config.Group{{Name: "dbas", Members: []string{"dave", "alice"}}}}
	if err := d.Reload(next); err != nil {
		t.Fatal(err)
	}
	if d.Enabled("alice") || !d.Enabled("dave") || d.InGroup("alice", "dbas") || !d.InGroup("dave", "dbas") {
		t.Fatalf("after reload: alice %v dave %v", d.Enabled("alice"), d.Enabled("dave"))
	}
	bad := &config.Config{Users: []config.User{{Name: "eve", SlackID: "U1"}, {Name: "mallory", SlackID: "U1"}}}
	if err := d.Reload(bad); err == nil {
		t.Fatal("a directory with a shared Slack ID loaded")
	}
	if !d.Enabled("dave") || d.Enabled("eve") {
		t.Fatal("a refused reload changed the directory")
	}
}

// TestReloadKeepsSSOUsers: users admitted by single sign-on are not in the
// config file; a reload of the config keeps them and their groups, and a
// local user added by the reload still cannot be taken over by SSO.
func TestReloadKeepsSSOUsers(t *testing.T) {
	d, err := NewDirectory(&config.Config{Users: []config.User{{Name: "alice"}},
		Groups: []config.Group{{Name: "dbas", Members: []string{"alice"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.admitSSO(Identity{Name: "oscar", Groups: []string{"dbas"}}, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(&config.Config{Users: []config.User{{Name: "alice"}, {Name: "dave"}},
		Groups: []config.Group{{Name: "dbas", Members: []string{"alice"}}}}); err != nil {
		t.Fatal(err)
	}
	if !d.Enabled("oscar") || !d.InGroup("oscar", "dbas") {
		t.Fatalf("after reload: sso user oscar enabled %v, in dbas %v", d.Enabled("oscar"), d.InGroup("oscar", "dbas"))
	}
	if err := d.admitSSO(Identity{Name: "dave"}, false); err == nil {
		t.Fatal("SSO took over dave, a local user added by the reload")
	}
}
