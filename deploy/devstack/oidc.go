package devstack

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// OIDCTool is the dev stack's OpenID Provider: the example provider of
// github.com/zitadel/oidc/v3 (its op package, storage, login and device
// pages) with users, groups and clients from a config file, built from
// deploy/devstack/oidcop.
const OIDCTool = "custos-oidc-op"

// OIDCUser is a user of the provider; Groups go into the groups claim of
// its ID tokens.
type OIDCUser struct {
	ID       string   `json:"id"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Groups   []string `json:"groups"`
}

// OIDCClient is a confidential client of the provider. It may use the
// authorization code (with PKCE) and device grants.
type OIDCClient struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	// RedirectURIs are exact; RedirectGlobs may hold * and **.
	RedirectURIs  []string `json:"redirect_uris,omitempty"`
	RedirectGlobs []string `json:"redirect_globs,omitempty"`
}

// OIDC is a running provider on loopback.
type OIDC struct {
	// Issuer is http://127.0.0.1:PORT/ (with the trailing slash the
	// provider puts in its tokens).
	Issuer  string
	Clients []OIDCClient
	Users   []OIDCUser
}

// OIDCOptions configure StartOIDC. Zero fields take DefaultOIDCUsers and
// DefaultOIDCClients.
type OIDCOptions struct {
	Users   []OIDCUser
	Clients []OIDCClient
}

// DefaultOIDCUsers: alice in dbas, bob in approvers, carol in no group
// the broker maps, and admin (a name the test brokers also have as a
// local user).
func DefaultOIDCUsers() []OIDCUser {
	return []OIDCUser{
		{ID: "u-alice", Username: "alice", Password: "alice-sso-pw", Email: "alice@sponsor.example", Name: "Alice", Groups: []string{"dbas"}},
		{ID: "u-bob", Username: "bob", Password: "bob-sso-pw", Email: "bob@sponsor.example", Name: "Bob", Groups: []string{"approvers"}},
		{ID: "u-carol", Username: "carol", Password: "carol-sso-pw", Email: "carol@sponsor.example", Name: "Carol", Groups: []string{"contractors"}},
		{ID: "u-admin", Username: "admin", Password: "admin-sso-pw", Email: "admin@sponsor.example", Name: "Admin", Groups: []string{"dbas"}},
	}
}

// DefaultOIDCClients: "custos" (the broker) and "other" (another
// application of the same provider), both with loopback redirects on any
// port and path.
func DefaultOIDCClients() []OIDCClient {
	globs := []string{"http://127.0.0.1:*/**", "http://localhost:*/**", "https://127.0.0.1:*/**"}
	return []OIDCClient{
		{ID: "custos", Secret: "custos-client-secret-" + randomToken(8), RedirectGlobs: globs},
		{ID: "other", Secret: "other-client-secret-" + randomToken(8), RedirectGlobs: globs},
	}
}

// Client returns the client with that id.
func (o *OIDC) Client(id string) OIDCClient {
	for _, c := range o.Clients {
		if c.ID == id {
			return c
		}
	}
	return OIDCClient{}
}

// User returns the user with that user name.
func (o *OIDC) User(name string) OIDCUser {
	for _, u := range o.Users {
		if u.Username == name {
			return u
		}
	}
	return OIDCUser{}
}

var oidcBuild struct {
	once sync.Once
	bin  string
	err  error
}

// oidcBinary finds the provider built from this checkout's
// deploy/devstack/oidcop in the tool cache (named for a digest of its
// source, so an edit rebuilds it), or builds it there: a few seconds with
// a warm module cache.
func oidcBinary() (string, error) {
	oidcBuild.once.Do(func() {
		src := filepath.Join(RepoRoot(), "deploy", "devstack", "oidcop")
		h := sha256.New()
		for _, f := range []string{"main.go", "go.mod", "go.sum"} {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				oidcBuild.err = fmt.Errorf("read %s source: %w", OIDCTool, err)
				return
			}
			h.Write(b)
		}
		out := filepath.Join(CacheBinDir(), fmt.Sprintf("%s-%x", OIDCTool, h.Sum(nil)[:6]))
		if isExecutable(out) {
			oidcBuild.bin = out
			return
		}
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false")
		if b, err := cmd.CombinedOutput(); err != nil {
			oidcBuild.err = fmt.Errorf("build %s: %v\n%s", OIDCTool, err, b)
			return
		}
		oidcBuild.bin = out
	})
	return oidcBuild.bin, oidcBuild.err
}

// StartOIDC starts a fresh OpenID Provider on a loopback port for the
// test, stopped at its end. Without the provider binary (and no Go
// toolchain to build it) the test is skipped, or fails under CI=true.
func StartOIDC(tb testing.TB, o OIDCOptions) *OIDC {
	tb.Helper()
	bin, err := oidcBinary()
	if err != nil {
		unavailable(tb, fmt.Sprintf("openid provider: %v; %s", err, InstallHint))
		return nil
	}
	if o.Users == nil {
		o.Users = DefaultOIDCUsers()
	}
	if o.Clients == nil {
		o.Clients = DefaultOIDCClients()
	}
	dir, err := workDir("oidc")
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	p, err := launchOIDC(bin, dir, listen, o, false)
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	tb.Cleanup(func() { p.stop(5 * time.Second); unregister(p) })
	return &OIDC{Issuer: "http://" + listen + "/", Clients: o.Clients, Users: o.Users}
}

// launchOIDC writes the provider's config into dir and starts it.
func launchOIDC(bin, dir, listen string, o OIDCOptions, detached bool) (*process, error) {
	cfg, err := json.MarshalIndent(map[string]any{"listen": listen, "clients": o.Clients, "users": o.Users}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	path := filepath.Join(dir, "op.json")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	p, err := startProcess(processSpec{Name: "oidc", Path: bin, Args: []string{"-config", path}, Dir: dir,
		LogPath: filepath.Join(dir, "oidc.log"), Detached: detached})
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = waitFor(p, 30*time.Second, func() error {
		resp, err := client.Get("http://" + listen + "/.well-known/openid-configuration")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("discovery: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		p.stop(time.Second)
		return nil, fmt.Errorf("oidc: %w", err)
	}
	return p, nil
}
