// Package identity owns who the broker's users are and how they prove it:
// the directory of users and groups built from config (lookups by name,
// Slack ID, email and SSH key) plus the users single sign-on admitted,
// argon2id password hashes, TOTP second factors, sign-in rate limiting,
// OpenID Connect single sign-on (OIDC: code flow with PKCE for the web
// and the CLI's loopback redirect, the device grant, claim mapping onto
// policy groups), and the bearer tokens issued after sign-in, which
// record how and when their holder authenticated (CheckAuth).
//
// docs/identity.md describes the configuration and the rules.
package identity
