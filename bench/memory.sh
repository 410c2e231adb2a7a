#!/usr/bin/env bash
# Memory per container, side by side: N go-http containers of one image (N in
# FABRICKS_BENCH_MEMORY_COUNTS, default "1 10 50") started with `ctr run -d --net-host`, each
# answering one request; then the PSS and RSS of everything they cost — every shim process on
# this containerd, plus the processes in the containers' cgroups (runc's Go binaries, our
# runners) — divided by N. RUNS rounds, alternating.
# usage: bench/memory.sh [RESULTS.json]

MEMORY_COUNTS=${FABRICKS_BENCH_MEMORY_COUNTS:-1 10 50}

# The pids a set of containers costs: our containerd's shims, their children (our shims' fork
# helpers, runners) and the processes of the containers' cgroups (any hierarchy, v1 or v2).
cost_pids() {
	local shims
	shims=$(pgrep -f "containerd-shim.* -address $SOCK" | paste -sd,)
	{
		tr ',' '\n' <<<"$shims"
		if [[ -n $shims ]]; then pgrep -P "$shims" || true; fi
		cat /sys/fs/cgroup/{,*/}"$NS"/bm-*/cgroup.procs 2>/dev/null || true
	} | grep -E '^[0-9]+$' | sort -un
}

# pss_rss: "PSS RSS" in KiB summed over cost_pids.
pss_rss() {
	local p
	for p in $(cost_pids); do cat "/proc/$p/smaps_rollup" 2>/dev/null; done |
		awk '$1 == "Pss:" { p += $2 } $1 == "Rss:" { r += $2 } END { print p + 0, r + 0 }'
}

# mem_round RUNTIME IMAGE N: starts N containers, one request each, prints "PSS RSS" per
# container in MiB; removes them.
mem_round() {
	local k port sum
	for ((k = 0; k < $3; k++)); do
		port=$((18500 + k))
		c run -d --null-io --net-host --runtime "$1" --env "FABRICKS_LISTEN=http=127.0.0.1:$port" "$2" "bm-$k" >/dev/null 2>"$TMP/mem.err" ||
			{ echo "bench: ctr run bm-$k: $(<"$TMP/mem.err")" >&2 && stop_prefix bm- && return 1; }
	done
	for ((k = 0; k < $3; k++)); do
		wait_http "http://127.0.0.1:$((18500 + k))/" || { echo "bench: bm-$k never answered" >&2 && stop_prefix bm- && return 1; }
	done
	sleep 1 # let the Go runtimes and the shims finish their start-up allocations
	sum=$(pss_rss)
	stop_prefix bm-
	awk -v s="$sum" -v n="$3" 'BEGIN { split(s, v, " "); printf "%.2f %.2f", v[1] / 1024 / n, v[2] / 1024 / n }'
}

memory() {
	local n i f r fp=() fr=() np=() nr=()
	for n in $MEMORY_COUNTS; do
		fp=() fr=() np=() nr=()
		for ((i = 0; i < RUNS; i++)); do
			if ((i % 2 == 0)); then
				f=$(mem_round "$RT" "$WASM_HTTP" "$n") && r=$(mem_round "$RUNC_RT" "$NATIVE_HTTP" "$n") || return
			else
				r=$(mem_round "$RUNC_RT" "$NATIVE_HTTP" "$n") && f=$(mem_round "$RT" "$WASM_HTTP" "$n") || return
			fi
			fp+=("${f% *}") fr+=("${f#* }") np+=("${r% *}") nr+=("${r#* }")
		done
		record "PSS per go-http container, $n running" MiB lower "$(median "${fp[@]}")" "$(median "${np[@]}")"
		record "RSS per go-http container, $n running" MiB lower "$(median "${fr[@]}")" "$(median "${nr[@]}")"
	done
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	# shellcheck source=lib.sh
	. "$(dirname "$0")/lib.sh"
	bench_setup
	check "memory" memory
	bench_finish "$@"
fi
