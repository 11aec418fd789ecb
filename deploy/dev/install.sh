#!/usr/bin/env bash
# install.sh installs and caches everything the local stack and the integration
# tests need: Debian packages (openssh-server, rsync, tmux, asciinema,
# pgbouncer, haproxy, sqlite3, postgresql-15, chromium for the browser tests,
# python3-paramiko, curl and ssh-audit for the SSH client tests) and
# tools built from Go source (MinIO, Vault) under ${XDG_CACHE_HOME:-$HOME/.cache}/custos/bin.
#
# It is idempotent: when everything is present it only checks and returns.
# Flags:
#   --no-apt     skip the Debian package step
#   --no-vault   skip the Vault build
#   --no-minio   skip the MinIO build
#   --quiet      print only what changed
set -euo pipefail

VAULT_VERSION="${CUSTOS_VAULT_VERSION:-v1.21.0}"
MINIO_VERSION="${CUSTOS_MINIO_VERSION:-latest}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/custos"
BIN_DIR="$CACHE_DIR/bin"

do_apt=1 do_vault=1 do_minio=1 quiet=0
for arg in "$@"; do
	case "$arg" in
	--no-apt) do_apt=0 ;;
	--no-vault) do_vault=0 ;;
	--no-minio) do_minio=0 ;;
	--quiet) quiet=1 ;;
	-h | --help)
		sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install.sh: unknown flag $arg" >&2
		exit 2
		;;
	esac
done

say() { echo "install: $*"; }
info() { if [ "$quiet" = 0 ]; then say "$@"; fi; }

mkdir -p "$BIN_DIR"

if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	else
		say "go is not installed; install Go 1.26 first" >&2
		exit 1
	fi
fi

# ---- Debian packages -------------------------------------------------------

# debian_packages maps a package to a file whose presence shows it is installed.
debian_packages=(
	"openssh-server:/usr/sbin/sshd"
	"openssh-client:/usr/bin/ssh-keygen"
	"postgresql-15:/usr/lib/postgresql/15/bin/initdb"
	"postgresql-client-15:/usr/lib/postgresql/15/bin/psql"
	"rsync:/usr/bin/rsync"
	"tmux:/usr/bin/tmux"
	"asciinema:/usr/bin/asciinema"
	"pgbouncer:/usr/sbin/pgbouncer"
	"sqlite3:/usr/bin/sqlite3"
	"openssl:/usr/bin/openssl"
	"procps:/usr/bin/pgrep"
	"chromium:/usr/bin/chromium"
	# Other SSH clients the proxy is tested with: paramiko (Ansible, Fabric),
	# curl's sftp:// (Debian's curl is built with libssh2), and ssh-audit.
	"python3-paramiko:/usr/lib/python3/dist-packages/paramiko/__init__.py"
	"curl:/usr/bin/curl"
	"ssh-audit:/usr/bin/ssh-audit"
	# systemd-analyze and systemd-sysusers check deploy/systemd's unit.
	# HAProxy is the TCP load balancer (PROXY protocol v2) in front of
	# the SSH and PostgreSQL proxies in the trusted-proxy tests.
	"haproxy:/usr/sbin/haproxy"
	"systemd:/usr/bin/systemd-analyze"
)

install_debian() {
	local missing=() entry pkg file
	for entry in "${debian_packages[@]}"; do
		pkg="${entry%%:*}"
		file="${entry#*:}"
		if [ ! -e "$file" ] && ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$pkg")
		fi
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		info "debian packages present"
		return
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		say "missing packages ${missing[*]} and no apt-get; install them by hand" >&2
		return 1
	fi
	local sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	say "installing debian packages: ${missing[*]}"
	# Keep package maintainer scripts from starting system services (sshd on
	# port 22, pgbouncer, the postgresql cluster): the stack starts its own.
	local policy=/usr/sbin/policy-rc.d created_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
		created_policy=1
	fi
	local rc=0
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
	if [ "$rc" = 0 ]; then
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
	fi
	if [ "$created_policy" = 1 ]; then $sudo rm -f "$policy"; fi
	if [ "$rc" != 0 ]; then
		say "apt-get failed ($rc)" >&2
		return "$rc"
	fi
	# Belt and braces: if a system sshd got started anyway, stop it.
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
	fi
	if [ -f /run/sshd.pid ]; then
		$sudo kill "$(cat /run/sshd.pid)" 2>/dev/null || true
	fi
	say "debian packages installed"
}

# ---- MinIO -----------------------------------------------------------------

install_minio() {
	if [ -x "$BIN_DIR/minio" ] && "$BIN_DIR/minio" --version >/dev/null 2>&1; then
		info "minio present ($BIN_DIR/minio)"
		return
	fi
	say "building minio@$MINIO_VERSION (a few minutes on a cold cache)"
	local start=$SECONDS
	(cd "$CACHE_DIR" && GOBIN="$BIN_DIR" GOFLAGS= go install -ldflags='-s -w' "github.com/minio/minio@$MINIO_VERSION")
	say "minio built in $((SECONDS - start))s: $BIN_DIR/minio"
}

# ---- Vault -----------------------------------------------------------------

# The vault module's go.mod replaces its api, api/auth/* and sdk modules with
# ./ paths that are not part of the module zip. Copy the module to a writable
# tree, drop the nested modules in at the versions go.mod requires, and build.
install_vault() {
	if [ -x "$BIN_DIR/vault" ] && "$BIN_DIR/vault" version 2>/dev/null | grep -q "Vault $VAULT_VERSION"; then
		info "vault present ($("$BIN_DIR/vault" version | head -1))"
		return
	fi
	say "building vault $VAULT_VERSION from source (about 10 minutes on 2 cores with a cold cache)"
	local start=$SECONDS
	local src="$CACHE_DIR/src/vault-$VAULT_VERSION"
	local tmp="$src.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$CACHE_DIR/src"
	# Run go outside any module so the repository's go.mod does not interfere.
	local dir
	dir=$(cd "$CACHE_DIR" && GOFLAGS= GO111MODULE=on go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		say "go mod download of vault $VAULT_VERSION failed" >&2
		return 1
	fi
	cp -R "$dir" "$tmp"
	chmod -R u+w "$tmp"
	# Every "replace X => ./path" with the version go.mod requires for X.
	local replaces
	replaces=$(cd "$tmp" && go mod edit -json | awk '
		/"Require"/ {sect="req"} /"Replace"/ {sect="rep"} /"Exclude"|"Retract"|"Tool"|"Godebug"/ {sect=""}
		sect=="req" && /"Path"/ {gsub(/[",]/,"",$2); p=$2}
		sect=="req" && /"Version"/ {gsub(/[",]/,"",$2); ver[p]=$2}
		sect=="rep" && /"Old"/ {inold=1; innew=0} sect=="rep" && /"New"/ {innew=1; inold=0}
		sect=="rep" && inold && /"Path"/ {gsub(/[",]/,"",$2); old=$2}
		sect=="rep" && innew && /"Path"/ {gsub(/[",]/,"",$2); if ($2 ~ /^\.\//) rep[old]=$2}
		END {for (o in rep) print o, rep[o], ver[o]}')
	if [ -z "$replaces" ]; then
		say "found no local replace lines in vault's go.mod" >&2
		return 1
	fi
	local mod path ver ndir
	while read -r mod path ver; do
		if [ -z "$ver" ]; then
			say "vault go.mod requires no version of $mod" >&2
			return 1
		fi
		ndir=$(cd "$CACHE_DIR" && GOFLAGS= go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		if [ -z "$ndir" ]; then
			say "go mod download $mod@$ver failed" >&2
			return 1
		fi
		info "vault: $path <- $mod@$ver"
		# Nested modules nest in each other (api/auth/* inside api): copy
		# contents without clobbering what is already there.
		mkdir -p "$tmp/$path"
		cp -R "$ndir/." "$tmp/$path/"
		chmod -R u+w "$tmp/$path"
	done <<<"$(echo "$replaces" | sort)"
	rm -rf "$src"
	mv "$tmp" "$src"
	(cd "$src" && GOFLAGS=-mod=mod go build -ldflags='-s -w' -o "$BIN_DIR/vault.new" .)
	mv "$BIN_DIR/vault.new" "$BIN_DIR/vault"
	say "vault built in $((SECONDS - start))s: $("$BIN_DIR/vault" version | head -1)"
}

# install_oidc builds the dev stack's OpenID Provider (deploy/devstack/oidcop,
# the example provider of github.com/zitadel/oidc/v3) under the name the
# dev stack looks for: a digest of its source, so an edit rebuilds it.
install_oidc() {
	local src digest out
	src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../devstack/oidcop" && pwd)"
	digest=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-12)
	out="$BIN_DIR/custos-oidc-op-$digest"
	if [ -x "$out" ]; then
		info "openid provider present ($out)"
		return
	fi
	say "building the openid provider"
	(cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" go build -o "$out" .)
}

if [ "$do_apt" = 1 ]; then install_debian; fi
install_oidc
if [ "$do_minio" = 1 ]; then install_minio; fi
if [ "$do_vault" = 1 ]; then install_vault; fi
info "tools in $BIN_DIR"
