#!/usr/bin/env bash
# First start of a new image (go-hello, a command: baseline code while the optimized entry
# compiles in the background) against later starts (the compiled
# module is mapped from the node's cache), go-hello, with runc's start of the native binary
# in the same rounds for the ratios. Each round deletes go-hello's cache entry first (only on
# this benchmark's own harness). The shim log's `compiled baseline code` / `using cached
# module` lines are counted: one baseline compile per first start, none for later starts.
# usage: bench/compile.sh [RESULTS.json]

# The cache entry of image $1 (from its origins record, written after its first start).
cache_entry_of() {
	local i f
	for ((i = 0; i < 50; i++)); do
		f=$(grep -lF "$1" "$W"/cache/*/*.origins 2>/dev/null | head -n 1)
		if [[ -n $f ]]; then
			echo "${f%.origins}.cwasm"
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# wait_entry ENTRY: the background compile has written ENTRY (120 s at most).
wait_entry() {
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -e $1 ]] && return 0
		sleep 0.2
	done
	why "no $1 120 s after a first start: the background compile did not write it"
}

compile_vs_cached() {
	local i entry mark first=() later=() nat=() t compiles cached
	c run --rm --runtime "$RT" "$WASM_HELLO" bk-warm >/dev/null 2>&1 || why "go-hello did not run" || return
	entry=$(cache_entry_of "$WASM_HELLO") || why "no cache entry recorded for $WASM_HELLO" || return
	wait_entry "$entry" || return
	mark=$(wc -l <"$W/containerd.log")
	for ((i = 0; i < RUNS; i++)); do
		rm -f "$entry"
		t=$(timed c run --rm --runtime "$RT" "$WASM_HELLO" "bk-first-$i") || return
		first+=("$t")
		# It ran baseline code; the later start must find the optimized entry written.
		wait_entry "$entry" || return
		t=$(timed c run --rm --runtime "$RT" "$WASM_HELLO" "bk-later-$i") || return
		later+=("$t")
		t=$(timed c run --rm --runtime "$RUNC_RT" "$NATIVE_HELLO" "bk-native-$i") || return
		nat+=("$t")
	done
	compiles=$(tail -n +"$((mark + 1))" "$W/containerd.log" | grep -c "compiled baseline code for .*${entry##*/}")
	cached=$(tail -n +"$((mark + 1))" "$W/containerd.log" | grep -c "using cached module .*${entry##*/}")
	record "first start of a new image (baseline code) go-hello" ms lower "$(median "${first[@]}")" "$(median "${nat[@]}")"
	record "later start (cached, mapped module) go-hello" ms lower "$(median "${later[@]}")" "$(median "${nat[@]}")"
	note "shim log: $compiles baseline compiles for $RUNS first starts; $cached cached loads for $RUNS later starts"
	((compiles == RUNS)) || why "$compiles baseline compiles for $RUNS first starts" || return
	((cached == RUNS)) || why "$cached cached loads for $RUNS later starts"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	# shellcheck source=lib.sh
	. "$(dirname "$0")/lib.sh"
	bench_setup
	check "compile vs cached start" compile_vs_cached
	bench_finish "$@"
fi
