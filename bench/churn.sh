#!/usr/bin/env bash
# Churn, side by side: go-hello tasks per second through create -> start -> exit -> delete
# (`ctr run --rm`), FABRICKS_BENCH_PARALLEL at a time (default 4), each worker running
# FABRICKS_BENCH_CHURN tasks (default 10) per round; RUNS rounds per runtime, interleaved.
# usage: bench/churn.sh [RESULTS.json]

CHURN_PARALLEL=${FABRICKS_BENCH_PARALLEL:-4}
CHURN_TASKS=${FABRICKS_BENCH_CHURN:-10}

# churn_round RUNTIME IMAGE TAG: tasks per second of one round.
churn_round() {
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

churn_fabricks() { churn_round "$RT" "$WASM_HELLO" "f$1"; }
churn_runc() { churn_round "$RUNC_RT" "$NATIVE_HELLO" "n$1"; }

churn() { side_by_side "churn go-hello: tasks/s, $CHURN_PARALLEL in parallel" tasks/s higher churn_fabricks churn_runc; }

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	# shellcheck source=lib.sh
	. "$(dirname "$0")/lib.sh"
	bench_setup
	check "churn" churn
	bench_finish "$@"
fi
