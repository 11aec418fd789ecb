#!/usr/bin/env bash
# build.sh copies the front-end packages the web UI embeds (xterm.js) from
# npm into static/vendor, where go:embed picks them up. `make build`,
# `make up` and `make test` run it; a plain `go build` without it still
# compiles and the UI falls back to plain-text terminals.
#
# The lockfile is committed without download addresses (npm's
# omit-lockfile-registry-resolved), so `npm ci` resolves packages from
# whatever registry npm is configured with.
#
# Without npm it warns and exits 0, unless CUSTOS_UI_REQUIRED=1.
set -euo pipefail
cd "$(dirname "$0")"

vendor=static/vendor
stamp="$vendor/.built-from"
want="$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [ -f "$vendor/xterm.mjs" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
	echo "web/ui: npm not found: the UI is built without xterm.js (plain-text terminals)" >&2
	[ "${CUSTOS_UI_REQUIRED:-0}" = 1 ] && exit 1
	exit 0
fi
if ! npm ci --no-audit --no-fund --omit-lockfile-registry-resolved --loglevel=error >/dev/null; then
	echo "web/ui: npm ci failed: the UI is built without xterm.js" >&2
	[ "${CUSTOS_UI_REQUIRED:-0}" = 1 ] && exit 1
	exit 0
fi
x=node_modules/@xterm/xterm
cp "$x/lib/xterm.mjs" "$vendor/xterm.mjs"
cp "$x/css/xterm.css" "$vendor/xterm.css"
cp "$x/LICENSE" "$vendor/xterm.LICENSE"
echo "$want" >"$stamp"
echo "web/ui: xterm.js $(node -p "require('./$x/package.json').version") copied into $vendor"
