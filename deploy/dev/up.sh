#!/usr/bin/env bash
# up.sh starts the local development stack on loopback (`make up`):
# PostgreSQL 15 and OpenSSH targets, MinIO, a Vault dev server bootstrapped
# from deploy/vault, and the Custos broker, with all state under .dev/.
# Running it again while everything runs changes nothing and prints the same
# instructions. deploy/dev/down.sh stops it all.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
dev="$root/.dev"

deploy/dev/install.sh --quiet

mkdir -p "$dev/bin" bin
go build -o "$dev/bin/devstack" ./deploy/devstack/cmd/devstack

custos_args=()
build_failed=0
if [ -d cmd/custos ]; then
	# Replace bin/custos only when the build differs, so an unchanged
	# broker keeps running.
	if go build -o "$dev/bin/custos.new" ./cmd/custos; then
		if cmp -s "$dev/bin/custos.new" bin/custos; then
			rm -f "$dev/bin/custos.new"
		else
			mv -f "$dev/bin/custos.new" bin/custos
		fi
		custos_args=(-custos "$root/bin/custos")
	else
		build_failed=1
		echo "up: bin/custos does not build; starting the rest of the stack without the broker" >&2
	fi
else
	echo "up: cmd/custos does not exist yet; starting the stack without the broker" >&2
fi

replicas="${REPLICAS:-1}"
CUSTOS_REPO_ROOT="$root" "$dev/bin/devstack" up -dir "$dev" -config "$root/deploy/dev/custos.yaml" \
	-replicas "$replicas" "${custos_args[@]}"

# shellcheck disable=SC1091
source "$dev/env"
cat <<EOT

Custos development stack is up (state in .dev/, logs in .dev/logs/).

  broker         $CUSTOS_URL  (CA: .dev/tls/ca.crt)
  ssh proxy      127.0.0.1:$CUSTOS_SSH_PORT      postgres proxy  127.0.0.1:$CUSTOS_PG_PORT
$(if [ "$replicas" = 2 ]; then
	echo "  broker b       $CUSTOS_URL_B  (second replica: same PostgreSQL store and bucket; CUSTOS_URL=\$CUSTOS_URL_B)"
	echo "  ssh proxy b    127.0.0.1:$CUSTOS_SSH_PORT_B      postgres proxy b  127.0.0.1:$CUSTOS_PG_PORT_B"
	echo "  state store    PostgreSQL database custos_store on the pg target below (logs: .dev/logs/custos-b.log)"
fi)
  ssh target     127.0.0.1:$CUSTOS_TARGET_SSH_PORT (login $CUSTOS_TARGET_SSH_LOGIN, Vault SSH CA certificates only)
  pg target      127.0.0.1:$CUSTOS_TARGET_PG_PORT (superuser $CUSTOS_TARGET_PG_USER)
  vault          $VAULT_ADDR
  minio          $CUSTOS_S3_ENDPOINT  bucket $CUSTOS_S3_BUCKET (Object Lock)
  openid provider $CUSTOS_OIDC_ISSUER

Demo users alice (requester), bob and carol (approvers), sam (security),
erin and frank (break-glass custodians); password \$CUSTOS_DEMO_PASSWORD,
SSH keys in .dev/keys/. A five-minute tour for each: docs/tour.md.

  source .dev/env
  bin/custos login --user alice
  bin/custos request demo-pg --role readonly --for 1h --reason "INC-123 demo"
  CUSTOS_CONFIG_DIR=.dev/bob bin/custos login --user bob     # approvers sign in separately
  CUSTOS_CONFIG_DIR=.dev/bob bin/custos approve <request-id>
  ssh -i .dev/keys/alice -p \$CUSTOS_SSH_PORT demo-ssh@127.0.0.1
  psql "host=127.0.0.1 port=\$CUSTOS_PG_PORT dbname=demo-pg user=alice sslmode=verify-full sslrootcert=.dev/tls/ca.crt"
      (the password psql asks for is a short-lived connection token from the broker)

Single sign-on: the stack's OpenID Provider ($CUSTOS_OIDC_ISSUER) knows dora (dbas) and
oscar (approvers), password \$CUSTOS_DEMO_PASSWORD. Web UI: "Sign in with Dev IdP".
  CUSTOS_CONFIG_DIR=.dev/dora bin/custos login --sso          # opens (or prints) the sign-in page
  CUSTOS_CONFIG_DIR=.dev/oscar bin/custos login --sso --device
  CUSTOS_CONFIG_DIR=.dev/dora bin/custos status

Masking (docs/data-protection.md): role monitor sees the demo's subjects table through the
data dictionary: subject IDs hashed, dates of birth masked to the year, names withheld, and
COPY ... TO STDOUT refused. Compare with readonly:
  bin/custos request demo-pg --role monitor --for 1h --reason "MON-7 monitoring visit"
  psql "host=127.0.0.1 port=\$CUSTOS_PG_PORT dbname=demo-pg user=alice sslmode=verify-full sslrootcert=.dev/tls/ca.crt options='-c custos.role=monitor'" \\
    -c "select s.subject_id, s.dob, s.name, v.visit from subjects s join visits v using (subject_id)"

Break-glass: account pg-admin (demo-pg as custos_breakglass, password known only to Vault)
is sealed; erin and frank must both confirm, each with the password and a TOTP code
(secrets in .dev/totp/; .dev/bin/devstack totp NAME prints the current code, -next waits for
a fresh one: each code is accepted once). Its daily drill is due at 12:00 UTC.

  CUSTOS_CONFIG_DIR=.dev/erin bin/custos login --user erin --totp \$(.dev/bin/devstack totp erin)
  CUSTOS_CONFIG_DIR=.dev/erin bin/custos breakglass list
  CUSTOS_CONFIG_DIR=.dev/erin bin/custos drill run pg-admin --totp \$(.dev/bin/devstack totp -next erin)
  CUSTOS_CONFIG_DIR=.dev/frank bin/custos login --user frank --totp \$(.dev/bin/devstack totp frank)
  CUSTOS_CONFIG_DIR=.dev/frank bin/custos breakglass confirm <unseal-id> --totp \$(.dev/bin/devstack totp -next frank)
  CUSTOS_CONFIG_DIR=.dev/erin bin/custos drill show <drill-id>
  web UI: $CUSTOS_URL/ui/breakglass (sign in as erin, frank or sam)

Straight to the targets, bypassing the broker (debugging only):
  PGPASSWORD=\$CUSTOS_TARGET_PG_PASSWORD psql -h 127.0.0.1 -p \$CUSTOS_TARGET_PG_PORT -U postgres
  .dev/bin/vault write -field=signed_key ssh/sign/ops public_key=@.dev/keys/alice.pub > /tmp/alice-cert.pub
  ssh -i .dev/keys/alice -o CertificateFile=/tmp/alice-cert.pub -p \$CUSTOS_TARGET_SSH_PORT $CUSTOS_TARGET_SSH_LOGIN@127.0.0.1

Stop everything with: make down
EOT
if [ -n "${CUSTOS_SLACK_BOT_TOKEN:-}" ] && [ -n "${CUSTOS_SLACK_SIGNING_SECRET:-}" ]; then
	echo "Slack approvals are on: requests post to channel C0APPROVALS${CUSTOS_SLACK_API_URL:+ via $CUSTOS_SLACK_API_URL};"
	echo "  set the app's interactivity request URL to $CUSTOS_URL/slack/interactions (docs/slack.md)."
fi
if [ "$build_failed" = 1 ]; then
	echo "up: the broker was not started: go build ./cmd/custos failed" >&2
	exit 1
fi
