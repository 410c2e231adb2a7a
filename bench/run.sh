#!/usr/bin/env bash
# Every benchmark, one command: Fabricks (wasm) against runc (the same Go program as a static
# native binary) on a private containerd of this machine, side by side and interleaved:
# cold start, churn, throughput, memory per container, compile vs cached start; then wasi:http
# components against CPython's and Node's own servers (components.sh). Prints a table
# with the ratios to runc and writes the figures as JSON. See bench/README.md.
#
# usage: bench/run.sh [--runs N] [-o RESULTS.json]     (needs root, go, cargo)
#   --runs N   runs per figure, medians taken (default 10; FABRICKS_BENCH_RUNS)
#   -o FILE    where the JSON goes (default bench/results/<UTC date>.json)
set -uo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=''
while (($#)); do
	case $1 in
	--runs) export FABRICKS_BENCH_RUNS=$2 && shift ;;
	-o) out=$2 && shift ;;
	*) echo "usage: $0 [--runs N] [-o RESULTS.json]" >&2 && exit 2 ;;
	esac
	shift
done
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"
# shellcheck disable=SC1090 # the pieces, each checked on its own
for piece in start churn http memory compile components; do . "$BENCH_DIR/$piece.sh"; done

bench_setup
components_setup
t0=$SECONDS
check "cold start go-hello" start_hello
check "cold start go-http" start_http
check "churn via the containerd API" churn_api
check "churn via ctr run --rm" churn_ctr
check "throughput" throughput
check "memory" memory
check "compile vs cached start" compile_vs_cached
components_bench
echo "# benchmarks: $((SECONDS - t0)) s, $RUNS runs per figure"
bench_finish ${out:+"$out"}
