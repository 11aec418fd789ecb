#!/usr/bin/env bash
# fuzz.sh runs every native Go fuzz target in the module for a short time
# each (FUZZTIME, default 20s), one target at a time, and fails on the first
# crasher (saved under the package's testdata/fuzz/ by go test).
#
#   deploy/dev/fuzz.sh [packages...]      default ./...
#   FUZZTIME=1m deploy/dev/fuzz.sh ./recorder/...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
fuzztime="${FUZZTIME:-20s}"
pkgs=("$@")
if [ "${#pkgs[@]}" -eq 0 ]; then pkgs=(./...); fi

count=0 failed=0
# Only packages with a Fuzz function in a test file are listed.
for pkg in $(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "${pkgs[@]}"); do
	dir="$(go list -f '{{.Dir}}' "$pkg")"
	if ! grep -qsE '^func Fuzz[A-Za-z0-9_]*\(' "$dir"/*_test.go; then continue; fi
	targets="$(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)"
	for target in $targets; do
		count=$((count + 1))
		echo "fuzz: $pkg $target for $fuzztime"
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"; then
			failed=$((failed + 1))
			echo "fuzz: $pkg $target FAILED (crasher in $dir/testdata/fuzz/$target/)" >&2
		fi
	done
done
echo "fuzz: $count targets, $failed failed"
[ "$failed" -eq 0 ]
