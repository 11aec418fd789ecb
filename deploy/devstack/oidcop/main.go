// Command custos-oidc-op runs the example OpenID Provider of
// github.com/zitadel/oidc/v3 (its op package, example storage, login and
// device pages) on loopback for the Custos dev stack and tests, with the
// users, groups and clients named in a JSON config file. It is a real
// provider: discovery, JWKS, authorization code with PKCE, device
// authorization grant and signed ID tokens all come from the library.
//
// Usage: custos-oidc-op -config op.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// fileConfig is the JSON config file.
type fileConfig struct {
	// Listen is host:port; the issuer is http://Listen/.
	Listen string `json:"listen"`
	// GroupsClaim names the claim that carries groups. Default "groups".
	GroupsClaim string       `json:"groups_claim"`
	Clients     []clientConf `json:"clients"`
	Users       []userConf   `json:"users"`
}

type clientConf struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	// RedirectURIs are exact redirect URIs; RedirectGlobs may use * (for
	// loopback redirects on any port, e.g. http://127.0.0.1:*/callback).
	RedirectURIs  []string `json:"redirect_uris"`
	RedirectGlobs []string `json:"redirect_globs"`
	// IDTokenLifetimeSeconds defaults to 300.
	IDTokenLifetimeSeconds int `json:"id_token_lifetime_seconds"`
}

type userConf struct {
	ID       string   `json:"id"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Groups   []string `json:"groups"`
}

func main() {
	path := flag.String("config", "", "JSON config file")
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, "custos-oidc-op:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg fileConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if cfg.Listen == "" {
		return fmt.Errorf("config: listen is required")
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	users := userStore{byID: map[string]*storage.User{}, groups: map[string][]string{}}
	for _, u := range cfg.Users {
		users.byID[u.ID] = &storage.User{ID: u.ID, Username: u.Username, Password: u.Password, FirstName: u.Name,
			Email: u.Email, EmailVerified: true, PreferredLanguage: language.English}
		users.groups[u.ID] = u.Groups
	}
	// The example storage keeps its own client table (for secrets and the
	// device grant); clients are answered by ours, which adds loopback
	// globs, the device grant and claims in the ID token.
	table := map[string]*storage.Client{}
	ours := map[string]*client{}
	for _, c := range cfg.Clients {
		table[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
		life := time.Duration(c.IDTokenLifetimeSeconds) * time.Second
		if life <= 0 {
			life = 5 * time.Minute
		}
		ours[c.ID] = &client{id: c.ID, redirects: c.RedirectURIs, globs: c.RedirectGlobs, idLifetime: life}
	}
	st := &store{Storage: storage.NewStorageWithClients(users, table), clients: ours, users: users, groupsClaim: cfg.GroupsClaim}
	issuer := "http://" + cfg.Listen + "/"
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	router := exampleop.SetupServer(issuer, st, log, false)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("openid provider listening", "issuer", issuer)
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// userStore implements storage.UserStore with groups beside each user.
type userStore struct {
	byID   map[string]*storage.User
	groups map[string][]string
}

// GetUserByID also finds a user by name: the example device login
// completes the flow with the user name as subject.
func (u userStore) GetUserByID(id string) *storage.User {
	if x, ok := u.byID[id]; ok {
		return x
	}
	return u.GetUserByUsername(id)
}
func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u.byID {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (u userStore) ExampleClientID() string { return storage.ServiceUserID }

// store is the example storage with our clients and a groups claim.
type store struct {
	*storage.Storage
	clients     map[string]*client
	users       userStore
	groupsClaim string
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("client not found")
	}
	return c, nil
}

func (s *store) addGroups(info *oidc.UserInfo, userID string, scopes []string) {
	if u := s.users.GetUserByID(userID); u != nil {
		userID = u.ID
	}
	for _, sc := range scopes {
		if sc == oidc.ScopeProfile || sc == "groups" {
			info.AppendClaims(s.groupsClaim, append([]string{}, s.users.groups[userID]...))
			return
		}
	}
}

func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	s.addGroups(info, req.GetSubject(), scopes)
	return nil
}

func (s *store) SetUserinfoFromScopes(ctx context.Context, info *oidc.UserInfo, userID, clientID string, scopes []string) error {
	// The ID token of the device grant is built from scopes alone.
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, subjectOnly(userID), scopes); err != nil {
		return err
	}
	s.addGroups(info, userID, scopes)
	return nil
}

// subjectOnly is an IDTokenRequest that only knows its subject.
type subjectOnly string

func (s subjectOnly) GetAMR() []string       { return nil }
func (s subjectOnly) GetAudience() []string  { return nil }
func (s subjectOnly) GetAuthTime() time.Time { return time.Time{} }
func (s subjectOnly) GetClientID() string    { return "" }
func (s subjectOnly) GetScopes() []string    { return nil }
func (s subjectOnly) GetSubject() string     { return string(s) }

// client is an op.Client: a confidential web client that may use
// loopback redirects on any port and the device grant, and whose ID token
// carries the user's claims.
type client struct {
	id         string
	redirects  []string
	globs      []string
	idLifetime time.Duration
}

var _ op.HasRedirectGlobs = (*client)(nil)

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) LoginURL(id string) string            { return "/login/username?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return c.idLifetime }
func (c *client) DevMode() bool                        { return true }
func (c *client) IsScopeAllowed(string) bool           { return true }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RedirectURIGlobs() []string           { return c.globs }
func (c *client) PostLogoutRedirectURIGlobs() []string { return nil }
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeDeviceCode}
}
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
