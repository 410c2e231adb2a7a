#!/usr/bin/env bash
# Throughput, side by side: wrk against one go-http container per runtime (host network),
# FABRICKS_BENCH_WRK_SECONDS per run (default 5), 2 threads, FABRICKS_BENCH_WRK_CONNECTIONS
# (default 32); RUNS runs per runtime, interleaved.
# usage: bench/http.sh [RESULTS.json]

WRK_SECONDS=${FABRICKS_BENCH_WRK_SECONDS:-5}
WRK_CONNECTIONS=${FABRICKS_BENCH_WRK_CONNECTIONS:-32}

# wrk_rps URL: requests per second of one wrk run (errors make it fail).
wrk_rps() {
	local out
	out=$(wrk -t2 -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" "$1" 2>&1) || { echo "bench: wrk $1: $out" >&2 && return 1; }
	if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then echo "bench: wrk $1 saw errors: $out" >&2 && return 1; fi
	awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

readonly WRK_PORT_FABRICKS=18400 WRK_PORT_RUNC=18401
wrk_fabricks() { wrk_rps "http://127.0.0.1:$WRK_PORT_FABRICKS/"; }
wrk_runc() { wrk_rps "http://127.0.0.1:$WRK_PORT_RUNC/"; }

throughput() {
	local rc=0
	c run -d --null-io --net-host --runtime "$RT" --env "FABRICKS_LISTEN=http=127.0.0.1:$WRK_PORT_FABRICKS" "$WASM_HTTP" bh-f >/dev/null &&
		c run -d --null-io --net-host --runtime "$RUNC_RT" --env "FABRICKS_LISTEN=http=127.0.0.1:$WRK_PORT_RUNC" "$NATIVE_HTTP" bh-n >/dev/null &&
		wait_http "http://127.0.0.1:$WRK_PORT_FABRICKS/healthz" && wait_http "http://127.0.0.1:$WRK_PORT_RUNC/healthz" ||
		why "go-http did not come up on both runtimes" || rc=1
	((rc)) || side_by_side "throughput go-http: wrk GET /, ${WRK_CONNECTIONS} connections" req/s higher wrk_fabricks wrk_runc || rc=1
	stop_prefix bh-
	return "$rc"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	# shellcheck source=lib.sh
	. "$(dirname "$0")/lib.sh"
	bench_setup
	check "throughput" throughput
	bench_finish "$@"
fi
