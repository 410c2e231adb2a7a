#!/usr/bin/env bash
# go-http three ways on one containerd (test-cluster/harness.sh), each under `ctr run -d
# --net-host`: the native static build with the default runc runtime, and the wasm builds in
# command (socket) mode and reactor mode with the Fabricks shim. wrk loads each in turn,
# interleaved, REPEAT rounds; prints every run's req/s, the median per mode and its ratio to
# native.
#
# usage: bench/http-modes.sh [-r REPEAT] [-d SECONDS] [-c CONNS] [-t THREADS] [-p PATH] [-f 1.6|2]
#   defaults: -r 3 -d 10 -c 50 -t 2 -p / -f 2   (the issue's figure: wrk -t2 -c50 -d10s)
# Needs root, go, cargo-built target/release binaries, wrk (apt-get install wrk).
# Knobs: FABRICKS_HARNESS_DIR, FABRICKS_NET_ID (see harness.sh); FABRICKS_INSTANCES sizes
# the reactor's pool (default: one instance per CPU).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
H=$REPO/test-cluster/harness.sh
FABRICKS=${FABRICKS_CLI:-$REPO/target/release/fabricks}
export FABRICKS_SHIM=${FABRICKS_SHIM:-$REPO/target/release/containerd-shim-fabricks-v1}
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fh-bench}

repeat=3 secs=10 conns=50 threads=2 path=/ flavour=2
while getopts r:d:c:t:p:f: opt; do
	case $opt in
	r) repeat=$OPTARG ;;
	d) secs=$OPTARG ;;
	c) conns=$OPTARG ;;
	t) threads=$OPTARG ;;
	p) path=$OPTARG ;;
	f) flavour=$OPTARG ;;
	*) sed -n '2,13p' "$0" >&2; exit 2 ;;
	esac
done

for tool in wrk curl go; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is not installed (apt-get install wrk curl; Go from go.dev)" >&2; exit 1; }
done
for bin in "$FABRICKS" "$FABRICKS_SHIM"; do
	[[ -x $bin ]] || { echo "bench: $bin missing: run cargo build --release first" >&2; exit 1; }
done

# mode → image, port, ctr run arguments (runtime and env)
MODES=(native command reactor)
declare -A PORT=([native]=18201 [command]=18202 [reactor]=18203)
declare -A IMAGE=([native]=localhost/go-http:bench-native [command]=localhost/go-http:bench-command
	[reactor]=localhost/go-http:bench-reactor)
declare -A RUNTIME=([native]=io.containerd.runc.v2 [command]=io.containerd.fabricks.v1
	[reactor]=io.containerd.fabricks.v1)

TMP=$(mktemp -d /tmp/bench-http.XXXXXX)
up=''
cleanup() {
	local m
	if [[ -n $up ]]; then
		for m in "${MODES[@]}"; do "$H" ctr "$flavour" task kill -s SIGKILL "bench-$m" >/dev/null 2>&1 || true; done
		sleep 1
		"$H" down "$flavour" >/dev/null 2>&1 || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

ctr() { "$H" ctr "$flavour" "$@"; }

build() {
	# A private copy: fabricks build writes into the project's .fabricks/.
	mkdir -p "$TMP/src/examples" "$TMP/src/sdk"
	cp -r "$REPO/examples/go-http" "$TMP/src/examples/"
	cp -r "$REPO/sdk/go" "$TMP/src/sdk/"
	rm -rf "$TMP/src/examples/go-http/.fabricks"
	build_one native --native
	build_one command --mode command
	build_one reactor --mode reactor
}

# build_one MODE FLAGS...: the MODE image archive, quietly unless the build fails.
build_one() {
	local m=$1
	shift
	"$FABRICKS" build "$TMP/src/examples/go-http" "$@" -t "${IMAGE[$m]}" -o "$TMP/$m.tar" >"$TMP/build.log" 2>&1 ||
		{ cat "$TMP/build.log" >&2; exit 1; }
}

import() {
	local local_flag=() m platform
	if [[ $flavour == 2 ]]; then local_flag=(--local); fi
	for m in "${MODES[@]}"; do
		platform=wasi/wasm
		if [[ $m == native ]]; then platform=linux/$(go env GOARCH); fi
		ctr images import "${local_flag[@]}" --platform "$platform" "$TMP/$m.tar" >/dev/null
	done
}

start() {
	local m=$1 env=(--env "FABRICKS_LISTEN=http=127.0.0.1:${PORT[$1]}") i
	if [[ -n ${FABRICKS_INSTANCES:-} ]]; then env+=(--env "FABRICKS_INSTANCES=$FABRICKS_INSTANCES"); fi
	# Every mode logs each request (go-http's request log) to a file: with no reader, a task's
	# stdout pipe fills up and blocks the server.
	ctr run -d --net-host --log-uri "file://$TMP/$m.log" --runtime "${RUNTIME[$m]}" "${env[@]}" "${IMAGE[$m]}" "bench-$m" >/dev/null
	for ((i = 0; i < 300; i++)); do
		curl -fsS -m 2 -o /dev/null "http://127.0.0.1:${PORT[$m]}/healthz" 2>/dev/null && return 0
		sleep 0.2
	done
	echo "bench: $m (bench-$m) did not answer on port ${PORT[$m]}" >&2
	exit 1
}

# wrk_rps MODE: one wrk run, its Requests/sec (non-2xx answers make the run count as failed).
wrk_rps() {
	local out
	out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" "http://127.0.0.1:${PORT[$1]}$path")
	if grep -q 'Non-2xx' <<<"$out"; then
		echo "bench: $1 answered errors:" >&2
		echo "$out" >&2
		exit 1
	fi
	if ! grep -q '^Requests/sec:' <<<"$out" || grep -q '^  0 requests' <<<"$out"; then
		echo "bench: $1 served no requests:" >&2
		echo "$out" >&2
		exit 1
	fi
	awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "# building go-http (native, wasm command, wasm reactor)"
build
echo "# containerd $flavour up"
"$H" down "$flavour" >/dev/null 2>&1 || true
"$H" up "$flavour" >/dev/null
up=1
import
for m in "${MODES[@]}"; do start "$m"; done
# One short warm-up each, not counted.
for m in "${MODES[@]}"; do wrk -t1 -c4 -d1s "http://127.0.0.1:${PORT[$m]}$path" >/dev/null; done

echo "# wrk -t$threads -c$conns -d${secs}s http://127.0.0.1:PORT$path, $repeat rounds, modes interleaved; $(nproc) CPUs"
declare -A RUNS
for ((r = 1; r <= repeat; r++)); do
	for m in "${MODES[@]}"; do
		rps=$(wrk_rps "$m")
		RUNS[$m]+="$rps "
		printf 'round %d %-8s %10.0f req/s\n' "$r" "$m" "$rps"
	done
done

declare -A MED
for m in "${MODES[@]}"; do MED[$m]=$(tr ' ' '\n' <<<"${RUNS[$m]}" | grep . | median); done
echo
printf '%-8s %12s %10s\n' mode 'req/s' 'vs native'
for m in "${MODES[@]}"; do
	printf '%-8s %12.0f %9.2fx\n' "$m" "${MED[$m]}" "$(awk -v a="${MED[$m]}" -v b="${MED[native]}" 'BEGIN { print a / b }')"
done
printf 'reactor/command: %.2fx\n' "$(awk -v a="${MED[reactor]}" -v b="${MED[command]}" 'BEGIN { print a / b }')"
