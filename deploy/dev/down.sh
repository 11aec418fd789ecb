#!/usr/bin/env bash
# down.sh stops every process deploy/dev/up.sh started, by the pids in
# .dev/pids, and checks that none is left. State in .dev/ is kept; remove
# .dev/ for a fresh start.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dev="$root/.dev"

# alive: the process exists and is not a zombie.
alive() {
	[ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" | grep -q '^Z'
}

# ours: the process's command line mentions .dev (guards against reused pids).
ours() {
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$dev/"
}

descendants() {
	local child
	for child in $(pgrep -P "$1" 2>/dev/null || true); do
		echo "$child"
		descendants "$child"
	done
}

stop() {
	local name="$1" pidfile="$dev/pids/$1.pid" pid sig=TERM kids i
	[ -f "$pidfile" ] || return 0
	pid="$(cat "$pidfile")"
	if alive "$pid" && ours "$pid"; then
		# sshd sessions run in sessions of their own: find them first.
		kids="$(descendants "$pid")"
		# PostgreSQL: fast shutdown, without waiting for clients. The broker
		# drains recordings for up to ten seconds: allow 20.
		if [ "$name" = postgres ]; then sig=INT; fi
		kill "-$sig" "$pid" 2>/dev/null || true
		for i in $(seq 1 100); do
			alive "$pid" || break
			sleep 0.2
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
		# shellcheck disable=SC2086
		kill -KILL "$pid" $kids 2>/dev/null || true
		echo "down: stopped $name (pid $pid)"
	fi
	rm -f "$pidfile"
}

if [ -d "$dev/pids" ]; then
	for name in custos custos-b sshd vault minio postgres; do
		stop "$name"
	done
	for pidfile in "$dev"/pids/*.pid; do
		[ -e "$pidfile" ] || continue
		stop "$(basename "$pidfile" .pid)"
	done
fi

# Anything still running from .dev is ours and a leak: report and end it.
left="$(pgrep -f "$dev/" 2>/dev/null | grep -vx "$$" || true)"
if [ -n "$left" ]; then
	echo "down: ending leftover processes from .dev: $(echo $left)" >&2
	# shellcheck disable=SC2086
	kill -KILL $left 2>/dev/null || true
	sleep 0.5
fi
if pgrep -f "$dev/" >/dev/null 2>&1; then
	echo "down: processes from .dev are still running:" >&2
	pgrep -af "$dev/" >&2 || true
	exit 1
fi
echo "down: the development stack is stopped"
