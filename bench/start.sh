#!/usr/bin/env bash
# Cold start, side by side: `ctr run` → exit of go-hello, and `ctr run -d` → first HTTP 200 of
# go-http, on Fabricks (wasm) and runc (the native static binary), interleaved, medians.
# usage: bench/start.sh [RESULTS.json]     (run.sh runs it with the rest)

hello_fabricks() { timed c run --rm --runtime "$RT" "$WASM_HELLO" "bs-hf-$1"; }
hello_runc() { timed c run --rm --runtime "$RUNC_RT" "$NATIVE_HELLO" "bs-hn-$1"; }

# start_hello: `ctr run --rm IMAGE` until the task has exited and ctr returned.
start_hello() { side_by_side "cold start go-hello: ctr run -> exit" ms lower hello_fabricks hello_runc; }

http_fabricks() { http_start "$RT" "$WASM_HTTP" "bs-sf-$1" $((18200 + $1 % 50)); }
http_runc() { http_start "$RUNC_RT" "$NATIVE_HTTP" "bs-sn-$1" $((18300 + $1 % 50)); }

start_http() { side_by_side "cold start go-http: ctr run -d -> first HTTP 200" ms lower http_fabricks http_runc; }

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	# shellcheck source=lib.sh
	. "$(dirname "$0")/lib.sh"
	bench_setup
	check "cold start go-hello" start_hello
	check "cold start go-http" start_http
	bench_finish "$@"
fi
