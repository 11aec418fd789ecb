#!/usr/bin/env bash
# bootstrap.sh configures a Vault for Custos: the one definition of the
# engines, roles and policies used by `make up` and by the integration test
# harness (deploy/devstack). Safe to run again on the same Vault.
#
#   database   connection $CUSTOS_TARGET_PG_NAME to the target PostgreSQL (its
#              username_template names user and grant), dynamic roles readonly
#              and readwrite (postgres/*.sql) with their stable owner roles
#              custos_readonly and custos_readwrite (postgres/roles.sql, created
#              in the target when missing), static role breakglass for the
#              login custos_breakglass (created in the target when missing)
#   ssh        CA with a generated ed25519 signing key, role ops (extensions
#              permit-pty and permit-port-forwarding on request, none by default)
#   transit    key custos-recordings (recording envelope encryption)
#   secret     KV v2 for break-glass material under secret/custos/
#   token      role custos-grant (policy custos-grant.hcl): the per-grant
#              tokens database logins are read with
#   policy     custos-broker (custos-broker.hcl), AppRole role custos-broker
#   policy     custos-custodians (custos-custodians.hcl): the out-of-band
#              break-glass path for custodians' own identities; ssh role
#              breakglass for the break-glass SSH login
#
# Environment:
#   VAULT_ADDR, VAULT_TOKEN        a Vault and a token allowed to configure it (required)
#   VAULT_BIN                      vault binary (default: $CUSTOS_TOOLS_BIN, the tool cache, $PATH)
#   CUSTOS_TARGET_PG_PORT          target PostgreSQL port (required)
#   CUSTOS_TARGET_PG_PASSWORD      its superuser's password (required)
#   CUSTOS_TARGET_PG_HOST          default 127.0.0.1
#   CUSTOS_TARGET_PG_USER          default postgres
#   CUSTOS_TARGET_PG_DB            default postgres
#   CUSTOS_TARGET_PG_NAME          connection name, default demo-pg
#   CUSTOS_TARGET_PG_SSLMODE       default prefer
#   CUSTOS_TARGET_SSH_LOGIN        login the ops role may sign for, default custos-demo
#   CUSTOS_BREAKGLASS_SSH_LOGIN    login the breakglass ssh role signs for, default
#                                  $CUSTOS_TARGET_SSH_LOGIN
#   CUSTOS_VAULT_AUDIT_FILE        when set, enables Vault's file audit device there
#                                  (it records custodians' out-of-band reads)
#   PSQL                           psql binary (default: $PATH, then /usr/lib/postgresql/15/bin)
#   CUSTOS_VAULT_OUT_DIR           when set, receives ssh-ca.pub (the SSH CA public
#                                  key), broker-token (a custos-broker token) and
#                                  approle-role-id / approle-secret-id
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

: "${VAULT_ADDR:?VAULT_ADDR is required}"
: "${VAULT_TOKEN:?VAULT_TOKEN is required}"
: "${CUSTOS_TARGET_PG_PORT:?CUSTOS_TARGET_PG_PORT is required}"
: "${CUSTOS_TARGET_PG_PASSWORD:?CUSTOS_TARGET_PG_PASSWORD is required}"
pg_host="${CUSTOS_TARGET_PG_HOST:-127.0.0.1}"
pg_user="${CUSTOS_TARGET_PG_USER:-postgres}"
pg_db="${CUSTOS_TARGET_PG_DB:-postgres}"
pg_name="${CUSTOS_TARGET_PG_NAME:-demo-pg}"
pg_sslmode="${CUSTOS_TARGET_PG_SSLMODE:-prefer}"
ssh_login="${CUSTOS_TARGET_SSH_LOGIN:-custos-demo}"
bg_ssh_login="${CUSTOS_BREAKGLASS_SSH_LOGIN:-$ssh_login}"
export VAULT_ADDR VAULT_TOKEN

find_vault() {
	if [ -n "${VAULT_BIN:-}" ]; then
		echo "$VAULT_BIN"
		return
	fi
	local d dirs=()
	if [ -n "${CUSTOS_TOOLS_BIN:-}" ]; then IFS=: read -ra dirs <<<"$CUSTOS_TOOLS_BIN"; fi
	for d in "${dirs[@]}" "${XDG_CACHE_HOME:-$HOME/.cache}/custos/bin"; do
		if [ -x "$d/vault" ]; then
			echo "$d/vault"
			return
		fi
	done
	command -v vault || {
		echo "bootstrap: vault not found; run deploy/dev/install.sh" >&2
		return 1
	}
}
vault_bin="$(find_vault)"
v() { "$vault_bin" "$@"; }

for _ in $(seq 1 100); do
	if v status >/dev/null 2>&1; then break; fi
	sleep 0.1
done
v status >/dev/null

enabled_mounts="$(v secrets list)"
enable_engine() {
	if ! grep -q "^$1/ " <<<"$enabled_mounts"; then
		v secrets enable -path="$1" "$1" >/dev/null
	fi
}
enable_engine database
enable_engine ssh
enable_engine transit

# --- database: the target PostgreSQL and its dynamic roles ------------------
find_psql() {
	if [ -n "${PSQL:-}" ]; then
		echo "$PSQL"
		return
	fi
	command -v psql && return
	if [ -x /usr/lib/postgresql/15/bin/psql ]; then
		echo /usr/lib/postgresql/15/bin/psql
		return
	fi
	echo "bootstrap: psql not found; set PSQL" >&2
	return 1
}
psql_bin="$(find_psql)"
target_psql() {
	PGPASSWORD="$CUSTOS_TARGET_PG_PASSWORD" PGSSLMODE="$pg_sslmode" "$psql_bin" -X -q -v ON_ERROR_STOP=1 \
		-h "$pg_host" -p "$CUSTOS_TARGET_PG_PORT" -U "$pg_user" -d "$pg_db" "$@" >/dev/null
}

# Generated role names show who and why: the broker reads credentials with a
# per-grant token whose display name is "<user>-<grant id>"; Vault stores it as
# "token-<user>-<grant-id>" (non-alphanumerics become "-").
username_template='{{ printf "%s-%s-%s" (.DisplayName | replace "token-" "" | truncate 40) (.RoleName | truncate 10) (random 6) }}'
v write "database/config/$pg_name" \
	plugin_name=postgresql-database-plugin \
	connection_url="postgresql://{{username}}:{{password}}@$pg_host:$CUSTOS_TARGET_PG_PORT/$pg_db?sslmode=$pg_sslmode" \
	username="$pg_user" \
	password="$CUSTOS_TARGET_PG_PASSWORD" \
	password_authentication=scram-sha-256 \
	username_template="$username_template" \
	allowed_roles="readonly,readwrite,breakglass" \
	verify_connection=true >/dev/null

# Each dynamic role has a stable NOLOGIN role in the target (postgres/roles.sql)
# that holds its privileges and owns what its logins create; the revocation
# statements hand anything a login still owns to it before dropping the login.
target_psql -f "$here/postgres/roles.sql"
for role in readonly readwrite; do
	v write "database/roles/$role" \
		db_name="$pg_name" \
		creation_statements=@"$here/postgres/$role.create.sql" \
		revocation_statements=@"$here/postgres/$role.revoke.sql" \
		default_ttl=1h \
		max_ttl=24h >/dev/null
done

# The break-glass account: a standing login whose password only Vault knows
# and rotates; custodians unseal it under dual control.
target_psql -f "$here/postgres/breakglass.sql"
if ! v read "database/static-roles/breakglass" >/dev/null 2>&1; then
	v write "database/static-roles/breakglass" \
		db_name="$pg_name" \
		username=custos_breakglass \
		rotation_period=24h >/dev/null
fi

# --- ssh: a user CA and the ops role ---------------------------------------
# The broker asks for permit-pty when a role allows a shell and for
# permit-port-forwarding when it allows local port forwarding; nothing is
# granted by default (empty default_extensions).
if ! v read -field=public_key ssh/config/ca >/dev/null 2>&1; then
	v write ssh/config/ca generate_signing_key=true key_type=ssh-ed25519 >/dev/null
fi
v write ssh/roles/ops - >/dev/null <<EOF
{
  "key_type": "ca",
  "allow_user_certificates": true,
  "allow_host_certificates": false,
  "allowed_users": "$ssh_login",
  "default_user": "$ssh_login",
  "allow_user_key_ids": true,
  "default_extensions": {},
  "allowed_extensions": "permit-pty,permit-port-forwarding",
  "ttl": "5m",
  "max_ttl": "12h"
}
EOF

# The break-glass SSH login: the broker signs for it while an account is
# unsealed; custodians sign their own key with it when the broker is down.
v write ssh/roles/breakglass - >/dev/null <<EOF
{
  "key_type": "ca",
  "allow_user_certificates": true,
  "allow_host_certificates": false,
  "allowed_users": "$bg_ssh_login",
  "default_user": "$bg_ssh_login",
  "allow_user_key_ids": true,
  "default_extensions": {},
  "allowed_extensions": "permit-pty",
  "ttl": "5m",
  "max_ttl": "1h"
}
EOF

# --- transit: the recording key ---------------------------------------------
if ! v read transit/keys/custos-recordings >/dev/null 2>&1; then
	v write -f transit/keys/custos-recordings type=aes256-gcm96 >/dev/null
fi

# --- kv: break-glass material ------------------------------------------------
if ! grep -q "^secret/ " <<<"$enabled_mounts"; then
	v secrets enable -path=secret -version=2 kv >/dev/null
fi

# --- per-grant tokens ----------------------------------------------------------
# Orphans (they outlive a broker token rotation), at most 24h: the broker
# creates one per grant with TTL = time left, and Vault revokes the leases
# read with it when it expires. Renewable so that an approved extension can
# move the end: the broker renews only to the extended grant's end, and Vault
# caps any renewal at token_explicit_max_ttl (lower it to the longest
# max_duration of your policies to tighten that bound).
v policy write custos-grant "$here/custos-grant.hcl" >/dev/null
v write auth/token/roles/custos-grant \
	allowed_policies=custos-grant \
	orphan=true \
	renewable=true \
	token_type=service \
	token_explicit_max_ttl=24h >/dev/null

# --- the broker's policy and AppRole ---------------------------------------
v policy write custos-broker "$here/custos-broker.hcl" >/dev/null
# The custodians' out-of-band break-glass path (attach to their identities).
v policy write custos-custodians "$here/custos-custodians.hcl" >/dev/null
if [ -n "${CUSTOS_VAULT_AUDIT_FILE:-}" ] && ! v audit list 2>/dev/null | grep -q '^file/ '; then
	v audit enable file file_path="$CUSTOS_VAULT_AUDIT_FILE" >/dev/null
fi
if ! v auth list | grep -q '^approle/ '; then
	v auth enable approle >/dev/null
fi
v write auth/approle/role/custos-broker \
	token_policies=custos-broker \
	token_ttl=1h token_max_ttl=24h \
	secret_id_ttl=0 >/dev/null

if [ -n "${CUSTOS_VAULT_OUT_DIR:-}" ]; then
	mkdir -p "$CUSTOS_VAULT_OUT_DIR"
	out="$CUSTOS_VAULT_OUT_DIR"
	(
		umask 077
		v read -field=public_key ssh/config/ca >"$out/ssh-ca.pub"
		v token create -orphan -policy=custos-broker -display-name=custos-broker \
			-ttl=768h -field=token >"$out/broker-token"
		v read -field=role_id auth/approle/role/custos-broker/role-id >"$out/approle-role-id"
		v write -f -field=secret_id auth/approle/role/custos-broker/secret-id >"$out/approle-secret-id"
	)
	chmod 644 "$out/ssh-ca.pub"
fi
echo "bootstrap: vault at $VAULT_ADDR configured (database -> $pg_host:$CUSTOS_TARGET_PG_PORT as $pg_name, static role breakglass, ssh role ops for $ssh_login, transit key custos-recordings, token role custos-grant, policies custos-broker and custos-custodians)"
