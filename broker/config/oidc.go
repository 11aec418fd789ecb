package config

import (
	"net/url"
	"slices"
)

// Identity configures where users come from besides the users list.
type Identity struct {
	// OIDC turns on single sign-on with an OpenID Provider. Default: nil,
	// local users only.
	OIDC *OIDC `yaml:"oidc"`
	// SCIM turns on SCIM 2.0 provisioning (scim.go). Default: nil, off.
	SCIM *SCIM `yaml:"scim"`
	// WebAuthn configures passkeys and security keys (registration in the
	// web UI, step-up assertions). Default: enabled with the relying
	// party taken from public_url.
	WebAuthn WebAuthn `yaml:"webauthn"`
	// StepUp names the fresh re-authentication sensitive actions outside
	// role policies require: passkey, totp (a passkey also does) or any.
	// Default: empty, none.
	StepUp StepUpActions `yaml:"step_up"`
}

// OIDC configures single sign-on (authorization code with PKCE, and the
// device authorization grant for headless CLIs). Users and their groups
// come from the ID token's claims.
type OIDC struct {
	// Name is shown on the sign-in button ("Sign in with Name"). Default:
	// "single sign-on".
	Name string `yaml:"name"`
	// Issuer is the provider's issuer URL; discovery is read from
	// Issuer/.well-known/openid-configuration and every ID token's iss
	// must equal it. Required.
	Issuer string `yaml:"issuer"`
	// ClientID is the broker's client at the provider; ID tokens must
	// name it in aud. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client's secret reference (env:NAME or
	// file:/path). Required: the broker is a confidential client.
	ClientSecret Secret `yaml:"client_secret"`
	// Scopes are requested besides openid. Default: profile, email.
	Scopes []string `yaml:"scopes"`
	// UsernameClaim names the claim that becomes the Custos user name.
	// Default: preferred_username.
	UsernameClaim string `yaml:"username_claim"`
	// GroupsClaim names the claim that lists the user's provider groups.
	// Default: groups.
	GroupsClaim string `yaml:"groups_claim"`
	// EmailClaim names the email claim. Default: email.
	EmailClaim string `yaml:"email_claim"`
	// GroupMap maps provider groups onto Custos policy groups; a provider
	// group not named here grants nothing. Default: none (SSO users are
	// in no group).
	GroupMap map[string]string `yaml:"group_map"`
	// AllowedGroups, when set, admits only users in at least one of these
	// provider groups. Default: any user the provider signs in.
	AllowedGroups []string `yaml:"allowed_groups"`
	// LinkLocalUsers lists local users (by name) that may also sign in
	// through the provider under the same name; they then keep their
	// configured groups plus the mapped ones. Any other SSO user whose
	// name is a local user's is refused, so the provider cannot sign in
	// as a local (break-glass) account. Default: none.
	LinkLocalUsers []string `yaml:"link_local_users"`
	// RedirectURL is the web callback registered at the provider.
	// Default: public_url + /auth/oidc/callback.
	RedirectURL string `yaml:"redirect_url"`
	// CACert is a PEM file for the provider's TLS certificate. Default:
	// system roots.
	CACert string `yaml:"ca_cert"`
}

// OIDC claim and scope defaults.
const (
	DefaultUsernameClaim = "preferred_username"
	DefaultGroupsClaim   = "groups"
	DefaultEmailClaim    = "email"
)

// WithDefaults returns o with every zero field at its default.
func (o OIDC) WithDefaults() OIDC {
	if o.Name == "" {
		o.Name = "single sign-on"
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{"profile", "email"}
	}
	if o.UsernameClaim == "" {
		o.UsernameClaim = DefaultUsernameClaim
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = DefaultGroupsClaim
	}
	if o.EmailClaim == "" {
		o.EmailClaim = DefaultEmailClaim
	}
	return o
}

func (c *Config) validateOIDC(ck *checker) {
	o := c.Identity.OIDC
	if o == nil {
		return
	}
	const p = "identity.oidc."
	if u, err := url.Parse(o.Issuer); o.Issuer == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		ck.add(p+"issuer", "must be the provider's http(s) issuer URL")
	}
	if o.ClientID == "" {
		ck.add(p+"client_id", "required")
	}
	if !o.ClientSecret.IsSet() {
		ck.add(p+"client_secret", "required (env:NAME or file:/path)")
	}
	if o.RedirectURL == "" && c.PublicURL == "" {
		ck.add(p+"redirect_url", "required when public_url is not set")
	}
	groups := map[string]bool{}
	for _, g := range c.Groups {
		groups[g.Name] = true
	}
	for idp, g := range o.GroupMap {
		if !groups[g] {
			ck.add(p+"group_map."+idp, "maps to unknown group %q", g)
		}
	}
	for _, u := range o.LinkLocalUsers {
		if !slices.ContainsFunc(c.Users, func(x User) bool { return x.Name == u }) {
			ck.add(p+"link_local_users", "unknown user %q", u)
		}
	}
}
