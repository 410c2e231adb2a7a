# shellcheck shell=bash
# What the benchmarks share: the harness's containerd (through test-cluster/lib/suite.sh), the
# images (each example as wasm for Fabricks and as a static native binary for runc), timing,
# medians, and the results file every piece appends to. Sourced by run.sh and by each piece
# when run alone.
#
# Knobs (environment):
#   FABRICKS_BENCH_RUNS     runs per figure, medians taken (default 10)
#   FABRICKS_BENCH_FLAVOUR  containerd flavour of the harness: 2 or 1.6 (default 2)
#   FABRICKS_HARNESS_DIR    harness work dir (default /tmp/fabricks-bench; taken down at the end)
#   FABRICKS_E2E_BUILD=0    use the binaries already built (and lib/suite.sh's other knobs)

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HERE=$(cd "$BENCH/../test-cluster" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-bench}
# shellcheck source-path=SCRIPTDIR source=../test-cluster/lib/suite.sh
. "$HERE/lib/suite.sh"

RUNS=${FABRICKS_BENCH_RUNS:-10}
readonly RUNC_RT=io.containerd.runc.v2
readonly WASM_HELLO=localhost/bench/go-hello:wasm NATIVE_HELLO=localhost/bench/go-hello:native
readonly WASM_HTTP=localhost/bench/go-http:wasm NATIVE_HTTP=localhost/bench/go-http:native
RESULTS='' # TSV: metric, unit, better (lower|higher), fabricks, runc

# --- setup -----------------------------------------------------------------------------------

# bench_setup: binaries, the four images, a fresh containerd with them imported. Exits on failure.
bench_setup() {
	local ex prepared=1
	suite_begin bench fabricks-bench
	RESULTS=$TMP/results.tsv
	: >"$RESULTS"
	if [[ ! $RUNS =~ ^[0-9]+$ ]] || ((RUNS == 0)); then
		echo "FABRICKS_BENCH_RUNS must be a positive number" >&2
		exit 2
	fi
	F=''
	check "install prerequisites (containerd, runc, wrk)" bench_prerequisites || prepared=0
	if building; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
	check "copy examples and SDK" copy_sources || prepared=0
	for ex in go-hello go-http; do
		check "fabricks build $ex (wasm)" build_image "$TMP/src/examples/$ex" "localhost/bench/$ex:wasm" "$TMP/$ex-wasm.tar" --layer tar || prepared=0
		check "fabricks build --native $ex" build_image "$TMP/src/examples/$ex" "localhost/bench/$ex:native" "$TMP/$ex-native.tar" --native || prepared=0
	done
	((prepared)) || bench_abort
	F=${FABRICKS_BENCH_FLAVOUR:-2}
	use_flavour
	check "containerd up" harness_up || bench_abort
	for ex in go-hello go-http; do
		check "import $ex (wasm)" import_image "$TMP/$ex-wasm.tar" "localhost/bench/$ex:wasm" wasi/wasm || bench_abort
		check "import $ex (native)" import_image "$TMP/$ex-native.tar" "localhost/bench/$ex:native" || bench_abort
	done
	check "warm-up: each image once on each runtime" bench_warm_up || bench_abort
}

bench_prerequisites() {
	install_prerequisites || return
	if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
		run_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk curl
		expect_rc 0
	fi
}

bench_abort() {
	summary
	exit 1
}

# --- measuring -------------------------------------------------------------------------------

# ms_since T0: milliseconds since $EPOCHREALTIME was T0, one decimal.
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

# timed CMD...: runs CMD (output discarded) and prints its wall time in ms; fails with CMD.
timed() {
	local t0=$EPOCHREALTIME
	"$@" >/dev/null 2>"$TMP/timed.err" || {
		echo "bench: \`$*\` failed: $(head -c 300 "$TMP/timed.err")" >&2
		return 1
	}
	ms_since "$t0"
}

# median V...: the median of the values.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# record METRIC UNIT lower|higher FABRICKS RUNC: one row of the results (RUNC '' for a figure
# only Fabricks has).
record() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
	echo "# $1: fabricks $4 $2${5:+, runc $5 $2}"
}

# side_by_side METRIC UNIT lower|higher FAB_FN RUNC_FN: RUNS runs of each function (called
# with the run's number, printing one figure), alternating which goes first so neither always
# meets a warm or a cold machine; records the medians.
side_by_side() {
	local i a b fab=() nat=()
	for ((i = 0; i < RUNS; i++)); do
		if ((i % 2 == 0)); then
			a=$($4 "$i") && b=$($5 "$i") || return
		else
			b=$($5 "$i") && a=$($4 "$i") || return
		fi
		fab+=("$a") nat+=("$b")
	done
	record "$1" "$2" "$3" "$(median "${fab[@]}")" "$(median "${nat[@]}")"
}

# stop_prefix PREFIX: kills and removes every container whose id starts with PREFIX.
stop_prefix() {
	local id
	for id in $(c containers ls -q 2>/dev/null | grep "^$1"); do
		c task kill -s SIGKILL "$id" >/dev/null 2>&1 &
	done
	wait
	for id in $(c containers ls -q 2>/dev/null | grep "^$1"); do
		wait_status "$id" STOPPED 30 >/dev/null 2>&1 || true
		c task rm -f "$id" >/dev/null 2>&1
		c containers rm "$id" >/dev/null 2>&1
	done
}

# http_start RUNTIME IMAGE ID PORT: ms from `ctr run -d` to the first 200 on PORT (host network,
# the port from FABRICKS_LISTEN, which the Go SDK honours natively too); then removes it.
# --null-io everywhere a server runs: with ctr's FIFOs and ctr gone, runc's shim blocks the
# request log on a full pipe while Fabricks' write fails fast; /dev/null is equal for both.
http_start() {
	local t0=$EPOCHREALTIME ms
	c run -d --null-io --net-host --runtime "$1" --env "FABRICKS_LISTEN=http=127.0.0.1:$4" "$2" "$3" >/dev/null 2>"$TMP/start.err" ||
		{ echo "bench: ctr run $3: $(<"$TMP/start.err")" >&2 && return 1; }
	# Asked again at once: the figure is the time to the first 200.
	wait_http "http://127.0.0.1:$4/healthz" "$TMO" 0 || { echo "bench: $3 never answered on port $4" >&2 && return 1; }
	ms=$(ms_since "$t0")
	stop_prefix "$3" >/dev/null
	echo "$ms"
}

# bench_warm_up: one run of each image on each runtime, so the figures are of started, not
# first, containers: the module compiled (compile.sh measures that), the binaries in the page
# cache for both.
bench_warm_up() {
	c run --rm --runtime "$RT" "$WASM_HELLO" bw-hf >/dev/null 2>&1 && c run --rm --runtime "$RUNC_RT" "$NATIVE_HELLO" bw-hn >/dev/null 2>&1 ||
		why "go-hello did not run on both runtimes" || return
	http_start "$RT" "$WASM_HTTP" bw-sf 18199 >/dev/null && http_start "$RUNC_RT" "$NATIVE_HTTP" bw-sn 18198 >/dev/null ||
		why "go-http did not serve on both runtimes" || return
}

# --- results ---------------------------------------------------------------------------------

# The table: figures and the ratio Fabricks / runc (for "higher is better" rows too; the
# column says which way is better).
print_table() {
	printf '\n%-52s %12s %12s %8s  %s\n' metric fabricks runc ratio better
	awk -F'\t' '{ r = ($5 + 0 == 0) ? "-" : sprintf("%.2fx", $4 / $5)
		printf "%-52s %12s %12s %8s  %s\n", $1 " (" $2 ")", $4, ($5 == "" ? "-" : $5), r, $3 }' "$RESULTS"
}

# write_json FILE: the results as JSON (rows plus the run's context).
write_json() {
	local out=$1
	mkdir -p "$(dirname "$out")"
	awk -F'\t' -v runs="$RUNS" -v flavour="$F" -v host="$(uname -srm)" -v cpus="$(nproc)" -v date="$(date -u +%FT%TZ)" \
		-v commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)" '
		function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
		BEGIN { printf "{\n  \"date\": %s, \"commit\": %s, \"host\": %s, \"cpus\": %s, \"containerd\": %s, \"runs\": %s,\n  \"results\": [", q(date), q(commit), q(host), cpus, q(flavour), runs }
		{ ratio = ($5 + 0 == 0) ? "null" : sprintf("%.3f", $4 / $5)
		  printf "%s\n    {\"metric\": %s, \"unit\": %s, \"better\": %s, \"fabricks\": %s, \"runc\": %s, \"ratio\": %s}", (NR > 1 ? "," : ""), q($1), q($2), q($3), $4, ($5 == "" ? "null" : $5), ratio }
		END { print "\n  ]\n}" }' "$RESULTS" >"$out"
	echo "# results written to $out"
}

# bench_finish [JSON]: table, JSON (default bench/results/<date>.json), harness down, summary.
bench_finish() {
	local out=${1:-$BENCH/results/$(date -u +%Y%m%dT%H%M%SZ).json}
	print_table
	write_json "$out"
	check "harness down" harness_down
	F=''
	summary
	((failed == 0))
}
