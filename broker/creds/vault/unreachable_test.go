package vault

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
	"github.com/custos-pam/custos/deploy/devstack"
)

// When Vault stops, asking for credentials fails with the clear
// "credentials unavailable: vault unreachable" error, audited, and returns
// within the configured timeout: both for a Vault that is gone (connection
// refused) and for one that accepts connections but never answers.
func TestVaultUnreachable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// A private Vault dev server, killed once the broker logged in to it.
	devstack.Require(t, "vault", devstack.InstallHint)
	vaultBin, err := devstack.ToolPath("vault")
	if err != nil {
		t.Fatal(err)
	}
	port := devstack.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(vaultBin, "server", "-dev", "-dev-root-token-id=private-root",
		"-dev-listen-address="+addr, "-dev-no-store-token")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "VAULT_DISABLE_MLOCK=true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})

	// A listener that accepts and never answers.
	blackhole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blackhole.Close()
	go func() {
		for {
			c, err := blackhole.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	const timeout = 1500 * time.Millisecond
	stopped := config.Vault{Address: "http://" + addr, Token: "private-root", Timeout: config.Duration(timeout)}
	silent := config.Vault{Address: "http://" + blackhole.Addr().String(), Token: "x", Timeout: config.Duration(timeout)}

	c, err := New(stopped, e.log)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.Health(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("private vault did not come up: %v", c.Health(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	killed = true

	for name, vc := range map[string]config.Vault{"stopped": stopped, "silent": silent} {
		t.Run(name, func(t *testing.T) {
			c, err := New(vc, e.log)
			if err != nil {
				t.Fatal(err)
			}
			iss, err := NewIssuer(Options{Client: c, Config: e.cfg, Store: e.store, Audit: e.audit, Log: e.log})
			if err != nil {
				t.Fatal(err)
			}
			pgGrant := e.grant(t, "frank", "pg1", "readonly", time.Minute)
			sshGrant := e.grant(t, "frank", "host1", "ops", time.Minute)
			calls := map[string]func() error{
				"health": func() error { return c.Health(ctx) },
				"postgres": func() error {
					_, err := iss.ForSession(ctx, pgGrant, "ses_down")
					return err
				},
				"ssh": func() error {
					_, err := iss.SSHForSession(ctx, sshGrant, "ses_down")
					return err
				},
				"static": func() error {
					_, err := iss.StaticCreds(ctx, "sam", "breakglass")
					return err
				},
			}
			for what, call := range calls {
				start := time.Now()
				err := call()
				took := time.Since(start)
				if !errors.Is(err, creds.ErrVaultUnreachable) {
					t.Errorf("%s: error %v, want ErrVaultUnreachable", what, err)
					continue
				}
				if !strings.Contains(err.Error(), "credentials unavailable: vault unreachable") {
					t.Errorf("%s: message %q lacks the clear reason", what, err)
				}
				if took > timeout+time.Second {
					t.Errorf("%s: returned after %s, timeout is %s", what, took, timeout)
				}
			}
			found := false
			for _, r := range e.auditRecords(t, "creds.issue") {
				if r.Outcome == broker.OutcomeError && strings.Contains(string(r.Details), pgGrant.ID) &&
					strings.Contains(r.Reason, "vault unreachable") {
					found = true
				}
			}
			if !found {
				t.Error("failed issue not audited with the reason")
			}
		})
	}
}
