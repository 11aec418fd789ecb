# custos-custodians: the out-of-band break-glass path, for when the Custos
# broker itself is down. Attach it to the custodians' own Vault identities
# (an OIDC or userpass group), never to a shared token: Vault's audit device
# then records which custodian read which secret. See
# docs/runbooks/break-glass.md.
#
# When the broker is back after an outage longer than an account's
# offline_window, it rotates every break-glass account and asks the
# custodians what happened.

# The current password of a break-glass database static role
# (database/static-roles/breakglass, and any named breakglass-*).
path "database/static-creds/breakglass" {
  capabilities = ["read"]
}
path "database/static-creds/breakglass-*" {
  capabilities = ["read"]
}

# A short-lived SSH certificate for the break-glass login: sign your own
# public key (ssh/roles/breakglass only signs for that login).
path "ssh/sign/breakglass" {
  capabilities = ["update"]
}
path "ssh/config/ca" {
  capabilities = ["read"]
}

# Break-glass material kept in KV v2 under secret/custos/breakglass/.
path "secret/data/custos/breakglass/*" {
  capabilities = ["read"]
}
path "secret/metadata/custos/breakglass/*" {
  capabilities = ["read", "list"]
}

# Rotating is the broker's job once it is back; custodians may also do it
# themselves after use (database/rotate-role/breakglass).
path "database/rotate-role/breakglass" {
  capabilities = ["update"]
}
path "database/rotate-role/breakglass-*" {
  capabilities = ["update"]
}

# Their own token.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
