#!/usr/bin/env bash
# Churn, side by side: go-hello tasks per second through create -> start -> exit -> delete,
# FABRICKS_BENCH_PARALLEL at a time (default 4), FABRICKS_BENCH_CHURN tasks (default 10) per
# worker per round; RUNS rounds per runtime, interleaved. Two rows:
#   - via the containerd API (the primary figure): one long-lived client, bench/churn, as
#     kubelet or any orchestrator is: NewContainer, NewTask (null IO), Start, exit, Delete;
#   - via `ctr run --rm`: one ctr process per task, whose own start (the same for both
#     runtimes, and no part of either) is in every task's time.
# usage: bench/churn.sh [RESULTS.json]

CHURN_PARALLEL=${FABRICKS_BENCH_PARALLEL:-4}
CHURN_TASKS=${FABRICKS_BENCH_CHURN:-10}
CHURN_BIN=''

# churn_client_bin: where the API client of this source is cached (keyed by its hash).
churn_client_bin() {
	local h
	h=$(cat "$BENCH"/churn/go.mod "$BENCH"/churn/go.sum "$BENCH"/churn/*.go | sha256sum | cut -c1-16)
	echo "${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}/churn-$h/churn"
}

# build_churn_client: builds bench/churn once per source version; sets CHURN_BIN.
build_churn_client() {
	CHURN_BIN=$(churn_client_bin)
	[[ -x $CHURN_BIN ]] && return 0
	command -v go >/dev/null || why "building bench/churn needs go" || return
	mkdir -p "${CHURN_BIN%/*}"
	run_cmd env -C "$BENCH/churn" GOFLAGS=-buildvcs=false go build -trimpath -o "$CHURN_BIN.partial" .
	expect_rc 0 || return
	mv "$CHURN_BIN.partial" "$CHURN_BIN"
}

# churn_api_round RUNTIME IMAGE TAG: tasks per second of one round through bench/churn.
churn_api_round() {
	local out
	out=$(timeout -k 10 "$TMO" "$CHURN_BIN" -address "$SOCK" -namespace "$NS" -image "$2" -runtime "$1" \
		-parallel "$CHURN_PARALLEL" -tasks $((CHURN_PARALLEL * CHURN_TASKS)) -prefix "bca-$3" 2>"$TMP/churn.err") ||
		{ echo "bench: churn tasks of $1 failed: $(tail -c 600 "$TMP/churn.err") $out" >&2 && return 1; }
	# tasks=N seconds=S tasks_per_s=R failures=F
	awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^tasks_per_s=/) { sub(/^[^=]*=/, "", $i); print $i; found = 1 } }
		END { exit !found }' <<<"$out" || { echo "bench: bench/churn printed no figure: $out" >&2 && return 1; }
}

# churn_ctr_round RUNTIME IMAGE TAG: tasks per second of one round of `ctr run --rm`.
churn_ctr_round() {
	local t0=$EPOCHREALTIME w pids=() bad=0
	for ((w = 0; w < CHURN_PARALLEL; w++)); do
		(
			for ((k = 0; k < CHURN_TASKS; k++)); do
				c run --rm --runtime "$1" "$2" "bc-$3-$w-$k" >/dev/null 2>&1 || exit 1
			done
		) &
		pids+=($!)
	done
	for w in "${pids[@]}"; do wait "$w" || bad=1; done
	((bad == 0)) || { echo "bench: a churn task of $1 failed" >&2 && return 1; }
	awk -v n=$((CHURN_PARALLEL * CHURN_TASKS)) -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", n / (b - a) }'
}

churn_api_fabricks() { churn_api_round "$RT" "$WASM_HELLO" "f$1"; }
churn_api_runc() { churn_api_round "$RUNC_RT" "$NATIVE_HELLO" "n$1"; }
churn_ctr_fabricks() { churn_ctr_round "$RT" "$WASM_HELLO" "f$1"; }
churn_ctr_runc() { churn_ctr_round "$RUNC_RT" "$NATIVE_HELLO" "n$1"; }

churn_api() {
	build_churn_client || return
	side_by_side "churn via the containerd API, $CHURN_PARALLEL parallel" tasks/s higher churn_api_fabricks churn_api_runc
}
churn_ctr() { side_by_side "churn via ctr run --rm, $CHURN_PARALLEL parallel" tasks/s higher churn_ctr_fabricks churn_ctr_runc; }

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	# shellcheck source=lib.sh
	. "$(dirname "$0")/lib.sh"
	bench_setup
	check "churn via the containerd API" churn_api
	check "churn via ctr run --rm" churn_ctr
	bench_finish "$@"
fi
