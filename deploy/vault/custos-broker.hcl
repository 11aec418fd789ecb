# custos-broker: what the Custos broker may do in Vault, and nothing more.
# Mount paths are the broker's defaults (vault.database_mount, ssh_mount,
# transit_mount, kv_mount in the broker config); change both together.

# Dynamic PostgreSQL logins are read with a per-grant token from the
# custos-grant token role (policy custos-grant), never with this token: the
# token's display name puts user and grant into the generated role name, and
# its TTL ends the login at the grant's end.
path "auth/token/create/custos-grant" {
  capabilities = ["update"]
}

# Revoke database leases (grant end, revocation, session end). Only the path
# form, scoped to the database engine: no other lease can be revoked.
path "sys/leases/revoke/database/creds/*" {
  capabilities = ["update"]
}

# Short-lived SSH user certificates for ephemeral session keys.
path "ssh/sign/*" {
  capabilities = ["update"]
}
# The SSH CA's public key (also served unauthenticated at ssh/public_key).
path "ssh/config/ca" {
  capabilities = ["read"]
}

# Break-glass: read and rotate database static roles.
path "database/static-creds/*" {
  capabilities = ["read"]
}
path "database/rotate-role/*" {
  capabilities = ["update"]
}

# Envelope encryption of recordings: data keys and unwrap for replay, with
# the one transit key Custos uses.
path "transit/datakey/plaintext/custos-recordings" {
  capabilities = ["update"]
}
path "transit/datakey/wrapped/custos-recordings" {
  capabilities = ["update"]
}
path "transit/encrypt/custos-recordings" {
  capabilities = ["update"]
}
path "transit/decrypt/custos-recordings" {
  capabilities = ["update"]
}
path "transit/keys/custos-recordings" {
  capabilities = ["read"]
}

# Sealed break-glass material under secret/custos/ (KV v2).
path "secret/data/custos/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/custos/*" {
  capabilities = ["read", "list"]
}

# Its own token: look up TTL and renew.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
