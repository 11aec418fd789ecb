package devstack

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// Demo single sign-on users of the dev stack's provider: names the
// config's local users do not have, in the provider groups custos.yaml
// maps onto dbas and approvers. Their password is CUSTOS_DEMO_PASSWORD.
var demoSSOUsers = []struct{ name, group string }{{"dora", "dbas"}, {"oscar", "approvers"}}

// settleOIDC fills in the provider's port, issuer and client secret.
func settleOIDC(env map[string]string) error {
	if env["CUSTOS_OIDC_SECRET"] == "" {
		env["CUSTOS_OIDC_SECRET"] = "oidc-" + randomToken(16)
	}
	port, _ := strconv.Atoi(env["CUSTOS_OIDC_PORT"])
	if port == 0 || !portFree(port) {
		p, err := freePort()
		if err != nil {
			return err
		}
		port = p
	}
	env["CUSTOS_OIDC_PORT"] = strconv.Itoa(port)
	env["CUSTOS_OIDC_ISSUER"] = fmt.Sprintf("http://127.0.0.1:%d/", port)
	return nil
}

// startDemoOIDC starts the dev stack's OpenID Provider (detached), with
// the client "custos" (the broker's web callback and the CLI's loopback
// redirects) and the demo SSO users.
func startDemoOIDC(dir string, env map[string]string, say func(string, ...any)) error {
	bin, err := oidcBinary()
	if err != nil {
		return fmt.Errorf("up: openid provider: %w", err)
	}
	o := OIDCOptions{Clients: []OIDCClient{{ID: "custos", Secret: env["CUSTOS_OIDC_SECRET"],
		RedirectGlobs: []string{"https://127.0.0.1:*/**", "http://127.0.0.1:*/**", "http://localhost:*/**"}}}}
	for _, u := range demoSSOUsers {
		o.Users = append(o.Users, OIDCUser{ID: "sso-" + u.name, Username: u.name, Password: env["CUSTOS_DEMO_PASSWORD"],
			Email: u.name + "@sponsor.example", Name: u.name, Groups: []string{u.group}})
	}
	odir := filepath.Join(dir, "oidc")
	p, err := launchOIDC(bin, odir, "127.0.0.1:"+env["CUSTOS_OIDC_PORT"], o, true)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if err := writePid(dir, "oidc", p.pid); err != nil {
		return err
	}
	say("openid provider on %s (sso users dora and oscar)", env["CUSTOS_OIDC_ISSUER"])
	return nil
}
