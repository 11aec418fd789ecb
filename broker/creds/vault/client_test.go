package vault

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
)

// The AppRole token is kept alive and, once it reaches its max TTL,
// replaced by a fresh login, without any call having to fail first.
func TestAppRoleTokenReplacedBeforeExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.root.Logical().Write("auth/approle/role/custos-broker-short", map[string]any{
		"token_policies": "custos-broker", "token_ttl": "2s", "token_max_ttl": "4s",
	}); err != nil {
		t.Fatal(err)
	}
	vc := e.appRole(t, "custos-broker-short")
	c, iss := e.start(t, &config.Config{Vault: vc, Targets: e.cfg.Targets})
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	first := c.API().Token()
	if first == "" {
		t.Fatal("no token after login")
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.API().Token() == first {
		if time.Now().After(deadline) {
			t.Fatal("token never replaced")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The old token is dead, the new one works.
	if _, err := e.root.Auth().Token().Lookup(first); err == nil {
		time.Sleep(5 * time.Second)
		if _, err := e.root.Auth().Token().Lookup(first); err == nil {
			t.Error("first token still valid long after its max TTL")
		}
	}
	g := e.grant(t, "alice", "pg1", "readonly", time.Minute)
	if _, err := iss.ForSession(ctx, g, "ses_relogin"); err != nil {
		t.Fatalf("issue after relogin: %v", err)
	}
}

// The custos-broker policy is least privilege: the broker cannot read
// other engines' secrets, write policies or mint tokens outside its role.
func TestBrokerPolicyIsNarrow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.client.Health(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		op   string
		call func() error
	}{
		{"write a policy", func() error {
			_, err := e.client.write(ctx, "sys/policies/acl/evil", map[string]any{"policy": `path "*" { capabilities = ["sudo"] }`})
			return err
		}},
		{"mint a plain child token", func() error {
			_, err := e.client.write(ctx, "auth/token/create", map[string]any{"policies": []string{"custos-broker"}})
			return err
		}},
		{"read secrets outside secret/custos", func() error {
			_, err := e.client.read(ctx, "secret/data/other")
			return err
		}},
		{"change a database role", func() error {
			_, err := e.client.write(ctx, "database/roles/readonly", map[string]any{"db_name": "x"})
			return err
		}},
		{"revoke a non-database lease prefix", func() error {
			_, err := e.client.write(ctx, "sys/leases/revoke-prefix/auth", nil)
			return err
		}},
	} {
		err := tc.call()
		var es *ErrStatus
		if !errors.As(err, &es) || es.Status != http.StatusForbidden {
			t.Errorf("%s: got %v, want permission denied", tc.op, err)
		}
	}
}

func TestNewRejectsIncompleteAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.Vault
	}{
		{"no address", config.Vault{Token: "t"}},
		{"no auth", config.Vault{Address: "http://127.0.0.1:1"}},
		{"role id only", config.Vault{Address: "http://127.0.0.1:1", RoleID: "r"}},
		{"unset env reference", config.Vault{Address: "http://127.0.0.1:1", Token: "env:CUSTOS_TEST_UNSET_TOKEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestClassify(t *testing.T) {
	ctx := context.Background()
	// A closed port: connection refused, fast.
	c, err := New(config.Vault{Address: "http://127.0.0.1:1", Token: "t", Timeout: config.Duration(time.Second)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Health(ctx)
	if !errors.Is(err, creds.ErrVaultUnreachable) {
		t.Fatalf("health against a closed port: %v", err)
	}
	// A caller that gave up is not reported as Vault being down.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Health(cctx); errors.Is(err, creds.ErrVaultUnreachable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled health: %v", err)
	}
}
