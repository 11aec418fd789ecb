#!/usr/bin/env bash
# fuzz.sh runs every native Go fuzz target in the module for a short time
# each (FUZZTIME, default 20s), one target at a time (go test -fuzz takes
# one target per run), and fails on the first crasher (saved under the
# package's testdata/fuzz/ by go test). The seed corpora (f.Add and
# testdata/fuzz) also run in plain `go test`, so `make test` covers them.
#
# Before fuzzing it checks that every decoder of untrusted bytes listed in
# required_targets below still has its fuzz target.
#
#   deploy/dev/fuzz.sh [packages...]      default ./...
#   deploy/dev/fuzz.sh --list             list the targets and exit
#   FUZZTIME=1m deploy/dev/fuzz.sh ./recorder/...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
fuzztime="${FUZZTIME:-20s}"

# required_targets: decoders of untrusted bytes and their fuzz targets
# (package directory, target). Add a line with every new decoder.
required_targets=(
	"approvals/slack FuzzParseInteraction"     # Slack interaction payloads
	"broker/audit/stream FuzzReadFrame"        # syslog frames (the test receiver's reader)
	"protocols/postgres FuzzFrames"            # PostgreSQL frames, both directions
	"protocols/postgres FuzzStartup"           # startup, SSL and cancel requests
	"protocols/proxyproto FuzzRead"            # PROXY protocol headers from load balancers
	"protocols/postgres/masking FuzzRewriteRow" # DataRow bodies rewritten by masking
	"protocols/postgres FuzzMaskStream"         # both directions of a masked session
	"protocols/ssh FuzzClientHello"            # identification and KEXINIT read before the handshake
	"protocols/ssh FuzzParseLogin"             # the SSH user field
	"protocols/ssh FuzzPTYRequest"             # pty-req and window-change payloads
	"protocols/ssh FuzzSFTPObserver"           # SFTP packets
	"protocols/ssh FuzzSCPObserver"            # scp protocol
	"recorder/asciicast FuzzEncoder"           # terminal output into asciicast
	"recorder/chunk FuzzOpen"                  # chunks read back from storage
	"recorder/event FuzzDecode"                # binary events
	"recorder/event FuzzEventJSON"             # JSON events (API, JSONL export)
	"recorder/keywrap FuzzLocalUnwrap"         # wrapped data keys from manifests
	"recorder/manifest FuzzParse"              # manifests read back from storage
	"recorder/sqlnorm FuzzNormalize"           # statement text for the session index
	"web/ui/internal/vt FuzzScreen"            # terminal output in the live view and replay
)

missing=0
for entry in "${required_targets[@]}"; do
	dir="${entry%% *}"
	target="${entry#* }"
	if ! grep -qsE "^func ${target}\(" "$dir"/*_test.go; then
		echo "fuzz: $dir has no $target (a decoder of untrusted bytes without its fuzz target)" >&2
		missing=$((missing + 1))
	fi
done
if [ "$missing" -gt 0 ]; then
	exit 1
fi

list=0
pkgs=()
for arg in "$@"; do
	case "$arg" in
	--list) list=1 ;;
	*) pkgs+=("$arg") ;;
	esac
done
if [ "${#pkgs[@]}" -eq 0 ]; then pkgs=(./...); fi

# count_files prints how many files a corpus directory holds (0 when absent).
count_files() {
	if [ -d "$1" ]; then
		find "$1" -type f | wc -l
	else
		echo 0
	fi
}

count=0 failed=0
# Only packages with a Fuzz function in a test file are listed.
for pkg in $(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "${pkgs[@]}"); do
	dir="$(go list -f '{{.Dir}}' "$pkg")"
	if ! grep -qsE '^func Fuzz[A-Za-z0-9_]*\(' "$dir"/*_test.go; then continue; fi
	targets="$(grep -hoE '^func Fuzz[A-Za-z0-9_]*\([a-z]+ \*testing\.F\)' "$dir"/*_test.go | sed -e 's/^func //' -e 's/(.*//' | sort -u)"
	for target in $targets; do
		count=$((count + 1))
		if [ "$list" = 1 ]; then
			echo "$pkg $target"
			continue
		fi
		echo "fuzz: $pkg $target for $fuzztime"
		corpus="$dir/testdata/fuzz/$target"
		before="$(count_files "$corpus")"
		log="$(mktemp)"
		if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"; then
			:
		elif grep -q 'context deadline exceeded' "$log" && [ "$(count_files "$corpus")" = "$before" ]; then
			# Go 1.26's fuzz coordinator can report its own -fuzztime
			# deadline as a failure (go.dev/issue/75804, fixed in Go 1.27):
			# no input failed and no crasher was written.
			echo "fuzz: $pkg $target stopped by the toolchain's fuzztime deadline race, no crasher: passed"
		else
			failed=$((failed + 1))
			echo "fuzz: $pkg $target FAILED (crasher in $corpus/)" >&2
		fi
		rm -f "$log"
	done
done
if [ "$list" = 1 ]; then exit 0; fi
echo "fuzz: $count targets, $failed failed"
[ "$failed" -eq 0 ]
