// Package identity owns who the broker's users are and how they prove it:
// the directory of users and groups built from config (lookups by name,
// Slack ID, email and SSH key), argon2id password hashes, TOTP second
// factors, sign-in rate limiting, and the bearer tokens issued after
// sign-in. Authenticator is the seam for other identity providers: an OIDC
// implementation can replace the config-backed password one without
// changing callers.
//
// docs/identity.md describes the configuration and the rules.
package identity
