# custos-broker: what the Custos broker may do in Vault, and nothing more.
# Mount paths are the broker's defaults (vault.database_mount, ssh_mount,
# transit_mount, kv_mount in the broker config); change both together.

# Dynamic PostgreSQL logins: one read of database/creds/<role> per grant or
# session. Roles are named after the target roles in the broker config.
path "database/creds/*" {
  capabilities = ["read"]
}

# Renew and revoke the leases it was issued (grant end, revocation, session
# end). The body form (sys/leases/revoke with lease_id) is what the API client
# uses; the path form is scoped to database leases.
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/revoke" {
  capabilities = ["update"]
}
path "sys/leases/revoke/database/creds/*" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
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

# Envelope encryption of recordings: data keys and unwrap for replay, with
# the one transit key Custos uses.
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
