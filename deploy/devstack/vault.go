package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Vault is a running Vault dev server (in-memory, unsealed) on loopback.
// Token is its root token.
type Vault struct {
	Addr  string
	Token string
	// BrokerToken is a token with the custos-broker policy only, and
	// SSHCAPublicKey the SSH CA's public key (authorized_keys form); both
	// are set by Bootstrap.
	BrokerToken    string
	SSHCAPublicKey []byte

	mu           sync.Mutex
	bootstrapped string // the Postgres address the last Bootstrap used
}

var sharedVault struct {
	once  sync.Once
	vault *Vault
	err   error
	miss  string
}

// StartVault returns the test binary's Vault dev server, starting it on first
// use. It is not bootstrapped: call Bootstrap.
func StartVault(tb testing.TB) *Vault {
	tb.Helper()
	sharedVault.once.Do(func() {
		bin, err := ToolPath("vault")
		if err != nil {
			sharedVault.miss = "vault not found; " + InstallHint + " (the first Vault build takes about 10 minutes)"
			return
		}
		dir, err := workDir("vault")
		if err != nil {
			sharedVault.err = err
			return
		}
		port, err := freePort()
		if err != nil {
			sharedVault.err = err
			return
		}
		sharedVault.vault, _, sharedVault.err = launchVault(vaultOptions{bin: bin, dir: dir, port: port, token: "root-" + randomToken(12)})
	})
	if sharedVault.miss != "" {
		unavailable(tb, sharedVault.miss)
	}
	if sharedVault.err != nil {
		tb.Fatalf("devstack: vault: %v", sharedVault.err)
	}
	return sharedVault.vault
}

// Bootstrap configures the database (connection to pg, roles readonly and
// readwrite), ssh (CA, role ops for DefaultSSHLogin) and transit engines and
// the custos-broker policy, by running deploy/vault/bootstrap.sh — the same
// definition `make up` uses. Running it again with the same pg is a no-op.
func (v *Vault) Bootstrap(tb testing.TB, pg *Postgres) {
	tb.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.bootstrapped == pg.Addr() {
		return
	}
	dir, err := workDir("vault-bootstrap")
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	out, err := runBootstrap(v, pg, DefaultSSHLogin, dir)
	if err != nil {
		tb.Fatalf("devstack: vault bootstrap: %v\n%s", err, out)
	}
	if err := v.readBootstrapOutput(dir); err != nil {
		tb.Fatalf("devstack: vault bootstrap: %v", err)
	}
	v.bootstrapped = pg.Addr()
}

// runBootstrap runs deploy/vault/bootstrap.sh against v and pg, leaving the
// SSH CA key and a broker token in outDir.
func runBootstrap(v *Vault, pg *Postgres, login, outDir string) ([]byte, error) {
	vaultBin, err := ToolPath("vault")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(RepoRoot(), "deploy", "vault", "bootstrap.sh"))
	cmd.Env = append(baseEnv(),
		"HOME="+outDir,
		"VAULT_ADDR="+v.Addr,
		"VAULT_TOKEN="+v.Token,
		"VAULT_BIN="+vaultBin,
		"CUSTOS_TARGET_PG_HOST="+pg.Host,
		"CUSTOS_TARGET_PG_PORT="+strconv.Itoa(pg.Port),
		"CUSTOS_TARGET_PG_USER="+pg.User,
		"CUSTOS_TARGET_PG_PASSWORD="+pg.Password,
		"CUSTOS_TARGET_SSH_LOGIN="+login,
		"CUSTOS_VAULT_OUT_DIR="+outDir,
	)
	return cmd.CombinedOutput()
}

func (v *Vault) readBootstrapOutput(dir string) error {
	ca, err := os.ReadFile(filepath.Join(dir, "ssh-ca.pub"))
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(dir, "broker-token"))
	if err != nil {
		return err
	}
	v.SSHCAPublicKey = ca
	v.BrokerToken = strings.TrimSpace(string(tok))
	return nil
}

type vaultOptions struct {
	bin      string
	dir      string
	port     int
	token    string
	detached bool
	logPath  string
}

// launchVault starts `vault server -dev` on 127.0.0.1:port with token as
// root token.
func launchVault(o vaultOptions) (*Vault, *process, error) {
	if o.logPath == "" {
		o.logPath = filepath.Join(o.dir, "vault.log")
	}
	addr := "127.0.0.1:" + strconv.Itoa(o.port)
	p, err := startProcess(processSpec{
		Name: "vault",
		Path: o.bin,
		Args: []string{"server", "-dev",
			"-dev-root-token-id=" + o.token,
			"-dev-listen-address=" + addr,
			"-dev-no-store-token",
		},
		// HOME keeps the dev server away from the user's ~/.vault-token.
		Env:      []string{"HOME=" + o.dir, "VAULT_DISABLE_MLOCK=true"},
		Dir:      o.dir,
		LogPath:  o.logPath,
		Detached: o.detached,
	})
	if err != nil {
		return nil, nil, err
	}
	v := &Vault{Addr: "http://" + addr, Token: o.token}
	err = waitFor(p, 60*time.Second, v.healthy)
	if err != nil {
		if !o.detached {
			p.stop(5 * time.Second)
			unregister(p)
		}
		return nil, nil, fmt.Errorf("vault: %w", err)
	}
	return v, p, nil
}

// healthy checks sys/health: initialised, unsealed, active.
func (v *Vault) healthy() error {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(v.Addr + "/v1/sys/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("sys/health: " + resp.Status)
	}
	return nil
}
