#!/usr/bin/env bash
# bench.sh runs every Go benchmark in the module (or the packages given) and
# prints one table: package, benchmark, ns/op, MB/s, B/op, allocs/op and any
# custom metrics. The raw `go test -bench` output is kept in
# ${BENCH_OUT:-.dev/bench.txt} for benchstat.
#
#   deploy/dev/bench.sh [packages...]     default ./...
#   BENCHTIME=2s BENCH='Chunk' deploy/dev/bench.sh ./recorder/...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
out="${BENCH_OUT:-$root/.dev/bench.txt}"
mkdir -p "$(dirname "$out")"
pkgs=("$@")
if [ "${#pkgs[@]}" -eq 0 ]; then pkgs=(./...); fi

set +e
go test -run '^$' -bench "${BENCH:-.}" -benchmem -benchtime "${BENCHTIME:-1s}" -timeout 30m "${pkgs[@]}" 2>&1 | tee "$out" >/dev/null
status=${PIPESTATUS[0]}
set -e

awk '
	/^pkg: / { pkg = $2; sub(/^github.com\/custos-pam\/custos\//, "", pkg); next }
	/^Benchmark/ && NF >= 4 {
		name = $1; sub(/^Benchmark/, "", name)
		ns = mb = bop = al = ""; extra = ""
		for (i = 3; i < NF; i += 2) {
			v = $i; u = $(i + 1)
			if (u == "ns/op") ns = v
			else if (u == "MB/s") mb = v
			else if (u == "B/op") bop = v
			else if (u == "allocs/op") al = v
			else extra = extra sprintf(" %s %s", v, u)
		}
		rows[++n] = sprintf("%-26s %-44s %14s %10s %10s %10s%s", pkg, name, ns, mb, bop, al, extra)
		next
	}
	/^(FAIL|--- FAIL|panic:)/ { fails[++f] = $0 }
	END {
		if (n == 0) { print "bench: no benchmarks ran"; }
		else {
			printf "%-26s %-44s %14s %10s %10s %10s %s\n", "package", "benchmark", "ns/op", "MB/s", "B/op", "allocs/op", "other"
			for (i = 1; i <= n; i++) print rows[i]
		}
		for (i = 1; i <= f; i++) print fails[i]
	}' "$out"
echo "raw output: $out"
exit "$status"
