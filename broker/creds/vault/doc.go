// Package vault issues Custos's short-lived upstream credentials from
// HashiCorp Vault: dynamic PostgreSQL logins from the database engine (per
// grant or per session, never outliving the grant), per-session SSH
// certificates from the SSH CA, and the static roles and KV v2 secrets that
// back break-glass accounts. It keeps its own Vault token alive, revokes a
// grant's leases as soon as the grant ends, and audits every issue, renewal
// and revocation without the secret.
package vault
