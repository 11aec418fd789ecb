#!/usr/bin/env bash
# run.sh runs the web UI's browser suite (`make test-browser`, part of
# `make test`): it installs Debian chromium when missing, builds the UI's
# npm assets (xterm.js) and the suite's (playwright-core) without writing
# registry addresses into lockfiles, then runs TestBrowser (build tag
# "browser") and TestEvidenceBrowser (evidence.mjs), which start a broker UI on loopback and drive chromium
# through suite.mjs. Screenshots, downloads and timings land in
# web/e2e/artifacts/.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export PATH="/usr/local/go/bin:$PATH"

if [ ! -x /usr/bin/chromium ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "e2e: installing chromium"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	else
		echo "e2e: /usr/bin/chromium is missing: apt-get install chromium (or run make tools)" >&2
		exit 1
	fi
fi
CUSTOS_UI_REQUIRED=1 web/ui/build.sh
(cd web/e2e && npm ci --no-audit --no-fund --omit-lockfile-registry-resolved --loglevel=error >/dev/null)
for lock in web/ui/package-lock.json web/e2e/package-lock.json; do
	if grep -q '"resolved"' "$lock"; then
		echo "e2e: $lock records download addresses; regenerate it with --omit-lockfile-registry-resolved" >&2
		exit 1
	fi
done
rm -rf web/e2e/artifacts && mkdir -p web/e2e/artifacts
go test -tags browser -count=1 -timeout 15m -run '^(TestBrowser.*|TestEvidenceBrowser)$' -v ./web/e2e/ 2>&1 | tee web/e2e/artifacts/go-test.log | grep -v '^=== RUN'
exit "${PIPESTATUS[0]}"
