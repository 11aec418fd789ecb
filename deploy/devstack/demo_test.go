package devstack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
)

// TestDemoBreakGlass: the config `make up` renders has a sealed
// break-glass account with two custodians who must both confirm, each
// with a TOTP secret in the file `make up` wrote, a drill due within a
// day, and `devstack totp` prints the code the broker expects from it.
func TestDemoBreakGlass(t *testing.T) {
	dir := t.TempDir()
	if err := ensureTOTPSecrets(dir); err != nil {
		t.Fatal(err)
	}
	before := readFileString(filepath.Join(dir, "totp", "erin"))
	if err := ensureTOTPSecrets(dir); err != nil {
		t.Fatal(err)
	}
	if after := readFileString(filepath.Join(dir, "totp", "erin")); after != before || before == "" {
		t.Fatal("a second make up replaced a custodian's TOTP secret")
	}
	if fi, err := os.Stat(filepath.Join(dir, "totp", "frank")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("totp secret file: %v %v", fi, err)
	}

	tmpl := filepath.Join("..", "dev", "custos.yaml")
	b, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	os.Expand(string(b), func(k string) string {
		env[k] = "x"
		if strings.HasSuffix(k, "_PORT") {
			env[k] = "1234"
		}
		return ""
	})
	env["CUSTOS_SLACK_ENABLED"] = "false"
	env["CUSTOS_DEV_DIR"] = dir
	if err := storeEnv(UpOptions{Dir: dir}, env); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "custos.yaml")
	if err := renderConfig(tmpl, out, env); err != nil {
		t.Fatal(err)
	}
	rendered, _ := os.ReadFile(out)
	cfg, err := config.Parse(rendered)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := cfg.FindBreakGlass("pg-admin")
	if !ok {
		t.Fatal("no break-glass account pg-admin in the demo config")
	}
	if a.Target != "demo-pg" || a.Required != 2 || a.Drill.Schedule == "" {
		t.Errorf("pg-admin = %+v", a)
	}
	users := map[string]config.User{}
	for _, u := range cfg.Users {
		users[u.Name] = u
	}
	members := map[string][]string{}
	for _, g := range cfg.Groups {
		members[g.Name] = g.Members
	}
	var custodians []string
	for _, c := range a.Custodians {
		if m, ok := members[c]; ok {
			custodians = append(custodians, m...)
		} else {
			custodians = append(custodians, c)
		}
	}
	if strings.Join(custodians, ",") != strings.Join(Custodians, ",") {
		t.Fatalf("custodians = %v, want %v", custodians, Custodians)
	}
	for _, c := range custodians {
		secret, err := users[c].TOTPSecret.Resolve()
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if _, err := identity.ParseTOTPSecret(secret); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if got, err := TOTPSecret(dir, c); err != nil || got != secret {
			t.Errorf("%s: TOTPSecret = %q %v, want the configured secret", c, got, err)
		}
	}
	if _, err := TOTPSecret(dir, "alice"); err == nil {
		t.Error("a TOTP code for a user without a secret")
	}
}
