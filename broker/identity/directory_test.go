package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/policy"
)

var _ policy.Directory = (*Directory)(nil)

func newKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// testConfig is a small organisation: two DBAs, an SRE, a security
// officer and a disabled former employee.
func testConfig(t testing.TB) (*config.Config, map[string]ssh.PublicKey) {
	t.Helper()
	keys := map[string]ssh.PublicKey{}
	var lines [4]string
	for i, n := range []string{"alice", "alice2", "bob", "mallory"} {
		keys[n], lines[i] = newKey(t)
	}
	keyFile := filepath.Join(t.TempDir(), "bob.pub")
	if err := os.WriteFile(keyFile, []byte("# bob's laptop\n"+lines[2]+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Users: []config.User{
			{Name: "alice", Email: "Alice@Example.org", SlackID: "U0ALICE", SSHKeys: []string{lines[0], lines[1]},
				PasswordHash: config.Secret(cheapHash(t, "alice-pw"))},
			{Name: "bob", Email: "bob@example.org", SlackID: "U0BOB", SSHKeys: []string{"file:" + keyFile},
				PasswordHash: config.Secret(cheapHash(t, "bob-pw")), TOTPSecret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"},
			{Name: "sam", Email: "sam@example.org"},
			{Name: "mallory", SlackID: "U0MAL", SSHKeys: []string{lines[3]}, Disabled: true,
				PasswordHash: config.Secret(cheapHash(t, "mallory-pw"))},
		},
		Groups: []config.Group{
			{Name: "dba", Members: []string{"alice", "bob", "mallory"}},
			{Name: "security", Members: []string{"sam"}},
			{Name: "nobody"},
		},
		SecurityAdmins: []string{"security"},
	}
	return cfg, keys
}

func TestDirectoryLookups(t *testing.T) {
	cfg, keys := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, id Identity, ok bool, want string) {
		t.Helper()
		if want == "" {
			if ok {
				t.Errorf("%s: found %s, want nothing", what, id.Name)
			}
			return
		}
		if !ok || id.Name != want {
			t.Errorf("%s: got %q (%v), want %s", what, id.Name, ok, want)
		}
	}
	id, ok := d.Lookup("alice")
	check("name", id, ok, "alice")
	if id.Email != "Alice@Example.org" || id.SlackID != "U0ALICE" || len(id.SSHKeys) != 2 || !slices.Equal(id.Groups, []string{"dba"}) {
		t.Errorf("alice = %+v", id)
	}
	id, ok = d.BySlackID("U0BOB")
	check("slack id", id, ok, "bob")
	id, ok = d.ByEmail("alice@EXAMPLE.org ")
	check("email, case-insensitive", id, ok, "alice")
	id, ok = d.ByPublicKey(keys["alice2"])
	check("second ssh key", id, ok, "alice")
	id, ok = d.ByPublicKey(keys["bob"])
	check("ssh key from a file", id, ok, "bob")
	id, ok = d.ByKeyFingerprint(ssh.FingerprintSHA256(keys["alice"]))
	check("fingerprint", id, ok, "alice")
	other, _ := newKey(t)
	id, ok = d.ByPublicKey(other)
	check("unknown key", id, ok, "")
	for what, f := range map[string]func() (Identity, bool){
		"disabled by name":  func() (Identity, bool) { return d.Lookup("mallory") },
		"disabled by slack": func() (Identity, bool) { return d.BySlackID("U0MAL") },
		"disabled by key":   func() (Identity, bool) { return d.ByPublicKey(keys["mallory"]) },
		"empty slack id":    func() (Identity, bool) { return d.BySlackID("") },
		"empty email":       func() (Identity, bool) { return d.ByEmail("") },
		"empty fingerprint": func() (Identity, bool) { return d.ByKeyFingerprint("") },
		"nil key":           func() (Identity, bool) { return d.ByPublicKey(nil) },
		"unknown user":      func() (Identity, bool) { return d.Lookup("zed") },
	} {
		id, ok := f()
		check(what, id, ok, "")
	}

	if m, ok := d.Members("dba"); !ok || !slices.Equal(m, []string{"alice", "bob"}) {
		t.Errorf("Members(dba) = %v, %v (a disabled user is no member)", m, ok)
	}
	if m, ok := d.Members("nobody"); !ok || len(m) != 0 {
		t.Errorf("Members(nobody) = %v, %v", m, ok)
	}
	if _, ok := d.Members("alice"); ok {
		t.Error("a user is not a group")
	}
	if !d.InGroup("bob", "dba") || d.InGroup("bob", "security") || d.InGroup("mallory", "dba") {
		t.Error("InGroup")
	}
	if !d.IsSecurityAdmin("sam") || d.IsSecurityAdmin("alice") || d.IsSecurityAdmin("") {
		t.Error("IsSecurityAdmin")
	}
	if g := d.GroupsOf("mallory"); g != nil {
		t.Errorf("GroupsOf(disabled) = %v", g)
	}
	var names []string
	for _, u := range d.Users() {
		names = append(names, u.Name)
	}
	if !slices.Equal(names, []string{"alice", "bob", "sam"}) {
		t.Errorf("Users() = %v", names)
	}
	// Returned identities are copies.
	id, _ = d.Lookup("alice")
	id.Groups[0] = "security"
	if d.IsSecurityAdmin("alice") || d.GroupsOf("alice")[0] != "dba" {
		t.Error("changing a returned identity changed the directory")
	}
}

func TestDirectoryDrivesPolicy(t *testing.T) {
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pol := config.Policy{Requesters: []string{"dba"}, Approvers: []string{"dba"}, Approvals: 2}
	// alice's only fellow DBA besides herself is bob: mallory is disabled.
	err = policy.CheckRequest(pol, d, "alice", time.Hour, "", "", time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC))
	if policy.CodeOf(err) != policy.CodeNoEligibleApprovers {
		t.Fatalf("CheckRequest = %v", err)
	}
	if policy.IsRequester(pol, d, "mallory") {
		t.Fatal("a disabled user may request")
	}
}

func TestDirectoryPlaintextPassword(t *testing.T) {
	t.Setenv("CUSTOS_TEST_PW", "dev-password")
	cfg := &config.Config{Users: []config.User{{Name: "dev", Password: "env:CUSTOS_TEST_PW"}}}
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := d.now().users["dev"]
	if !a.hasPass || !a.password.verify("dev-password") {
		t.Fatal("plaintext password not hashed into a working hash")
	}
	if a.password.params != defaultPasswordParams {
		t.Fatalf("plaintext hashed with %+v", a.password.params)
	}
}

func TestDirectoryErrors(t *testing.T) {
	_, line := newKey(t)
	goodHash := cheapHash(t, "x")
	tests := []struct {
		name  string
		users []config.User
		want  string
	}{
		{"malformed hash", []config.User{{Name: "a", PasswordHash: config.Secret(goodHash[:40])}}, "user a: password_hash"},
		{"missing env", []config.User{{Name: "a", Password: "env:CUSTOS_TEST_UNSET_VAR"}}, "user a: password: secret env:CUSTOS_TEST_UNSET_VAR"},
		{"bad totp", []config.User{{Name: "a", TOTPSecret: "short"}}, "user a: totp_secret"},
		{"bad key", []config.User{{Name: "a", SSHKeys: []string{"ssh-ed25519 AAAAnope"}}}, "user a: ssh_keys[0]"},
		{"shared key", []config.User{{Name: "a", SSHKeys: []string{line}}, {Name: "b", SSHKeys: []string{line}}}, "user b: ssh key"},
		{"shared slack id", []config.User{{Name: "a", SlackID: "U1"}, {Name: "b", SlackID: "U1"}}, "slack_id U1 is also a's"},
		{"shared email", []config.User{{Name: "a", Email: "x@y"}, {Name: "b", Email: "X@Y"}}, "email X@Y is also a's"},
		{"duplicate name", []config.User{{Name: "a"}, {Name: "a"}}, "duplicate"},
	}
	for _, tt := range tests {
		_, err := NewDirectory(&config.Config{Users: tt.users})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), goodHash[20:40]) {
			t.Errorf("%s: error leaks the hash: %v", tt.name, err)
		}
	}
}

// Unknown users are checked against a dummy hash as expensive as the
// configured ones, so timing does not tell them apart.
func TestDirectoryDummyHashCost(t *testing.T) {
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.now().dummy.params != cheapParams || len(d.now().dummy.salt) != 16 || len(d.now().dummy.key) != 32 {
		t.Fatalf("dummy = %+v, want the configured hashes' parameters", d.now().dummy.params)
	}
	d, err = NewDirectory(&config.Config{Users: []config.User{{Name: "nopw"}}})
	if err != nil {
		t.Fatal(err)
	}
	if d.now().dummy.params != defaultPasswordParams {
		t.Fatalf("dummy without hashes = %+v", d.now().dummy.params)
	}
}
