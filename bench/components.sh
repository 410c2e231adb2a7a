#!/usr/bin/env bash
# wasi:http components, side by side: req/s of the componentize-py and componentize-js test
# services (test-cluster/components) under Fabricks against the same service on CPython's and
# Node's own HTTP servers under runc; then what one request costs the host on a trivial
# component (bench/components/trivial-http, Rust for wasm32-wasip2): a fresh instance, the
# call into it, the teardown, as the shim accounts them while wrk drives it.
# usage: bench/components.sh [RESULTS.json]
#
# The runc side runs the host's own python3 and node from a rootfs made of the binaries, the
# libraries they load and CPython's standard library (`ctr run --rootfs`): no image of a
# distribution is needed, and both sides run the interpreter builds this machine has.

COMPONENTS=${FABRICKS_TEST_COMPONENTS:-${XDG_CACHE_HOME:-$HOME/.cache}/fabricks/test-components}
readonly WASM_PY=localhost/bench/py-http:wasm WASM_JS=localhost/bench/js-http:wasm WASM_TRIVIAL=localhost/bench/trivial-http:wasm

# components_setup: the three components packed and imported, the two native rootfs made.
components_setup() {
	check "test components (componentize-py, componentize-js)" build_test_components || bench_abort
	check "trivial-http for wasm32-wasip2" build_trivial || bench_abort
	check "pack and import the components" import_components || bench_abort
	check "native rootfs: CPython and Node with what they load" native_rootfs_all || bench_abort
}

build_test_components() {
	run_cmd env FABRICKS_TEST_COMPONENTS="$COMPONENTS" "$HERE/components/build.sh"
	expect_rc 0
}

build_trivial() {
	local target=${XDG_CACHE_HOME:-$HOME/.cache}/fabricks/trivial-http-target
	if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
		run_cmd rustup target add wasm32-wasip2
		expect_rc 0 || return
	fi
	run_cmd cargo build --release --locked --target wasm32-wasip2 --target-dir "$target" \
		--manifest-path "$BENCH/components/trivial-http/Cargo.toml"
	expect_rc 0 || return
	cp "$target/wasm32-wasip2/release/trivial_http.wasm" "$TMP/trivial-http.wasm" || why "no trivial_http.wasm from cargo"
}

import_components() {
	local name ref
	for name in py-http js-http trivial-http; do
		ref=localhost/bench/$name:wasm
		local wasm=$COMPONENTS/$name.wasm
		[[ $name != trivial-http ]] || wasm=$TMP/trivial-http.wasm
		build_image "$wasm" "$ref" "$TMP/$name.tar" || return
		import_image "$TMP/$name.tar" "$ref" wasi/wasm || return
	done
}

# native_rootfs DIR FILE...: a rootfs for runc holding each FILE (binaries, directories) at
# its own path, every shared library the binaries and the ELF files in those directories
# load, and the mount points runc needs. Installed packages (site-packages) and test suites
# stay out: the services need neither.
native_rootfs() {
	local dir=$1 f lib elves=()
	shift
	mkdir -p "$dir"/{proc,dev,sys,tmp,etc,app} || return
	for f in "$@"; do
		if [[ -d $f ]]; then
			copy_in "$dir" "$f" --exclude=site-packages --exclude=dist-packages --exclude=test --exclude=__pycache__ || return
			mapfile -t -O "${#elves[@]}" elves < <(find "$dir$f" -type f -name '*.so*' | sed "s|^$dir||")
		else
			# A binary by its target (python3 is often a link).
			copy_in "$dir" "$f" -h || return
			elves+=("$(readlink -f "$f")")
		fi
	done
	for lib in $(printf '%s\0' "${elves[@]}" | xargs -0 -n 50 ldd 2>/dev/null |
		awk '$2 == "=>" && $3 ~ /^\// { print $3 } NF == 2 && $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }' | sort -u); do
		copy_in "$dir" "$lib" -h || return
	done
}

# copy_in DIR PATH [TAR_FLAG...]: PATH copied to DIR/PATH (tar, not `cp --parents`, which
# fails on an existing parent depending on the working directory).
copy_in() {
	local dir=$1 path=$2
	shift 2
	tar -C / -c "$@" -f - "${path#/}" | tar -C "$dir" -xf -
}

native_rootfs_all() {
	local py stdlib node
	# The distribution's CPython where there is one (no site-packages to leave out).
	local python=python3
	[[ ! -x /usr/bin/python3 ]] || python=/usr/bin/python3
	py=$("$python" -c 'import sys; print(sys.executable)') &&
		stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])') &&
		node=$(command -v node) || why "python3 and node are needed for the native baselines" || return
	ROOTFS_PY=$TMP/rootfs-py ROOTFS_JS=$TMP/rootfs-js PY_BIN=$py NODE_BIN=$node
	native_rootfs "$ROOTFS_PY" "$py" "$stdlib" && native_rootfs "$ROOTFS_JS" "$node" ||
		why "copying the interpreters into a rootfs failed" || return
	cp "$BENCH/components/native/py_http.py" "$ROOTFS_PY/app/" && cp "$BENCH/components/native/js_http.js" "$ROOTFS_JS/app/"
}

# serve_pair NAME WASM_IMAGE ROOTFS PORT CMD...: the component on PORT (Fabricks) and CMD on
# PORT+1 (runc, CMD gets the port as its last argument), both answering.
serve_pair() {
	local name=$1 image=$2 rootfs=$3 port=$4
	shift 4
	c run -d --null-io --net-host --runtime "$RT" --env "FABRICKS_LISTEN=http=127.0.0.1:$port" "$image" "bc-$name-f" >/dev/null ||
		why "ctr run $name on Fabricks failed" || return
	c run -d --null-io --net-host --runtime "$RUNC_RT" --rootfs "$rootfs" "bc-$name-n" "$@" "$((port + 1))" >/dev/null ||
		why "ctr run $name's native twin on runc failed" || return
	wait_http "http://127.0.0.1:$port/" || return
	wait_http "http://127.0.0.1:$((port + 1))/"
}

wrk_at() { wrk_rps "http://127.0.0.1:$1/"; }
# The pair side_by_side measures: the component on PAIR_PORT, its native twin on the next.
PAIR_PORT=0
wrk_pair_fabricks() { wrk_at "$PAIR_PORT"; }
wrk_pair_runc() { wrk_at "$((PAIR_PORT + 1))"; }

# component_throughput NAME WASM_IMAGE ROOTFS PORT CMD...
component_throughput() {
	local name=$1 rc=0
	PAIR_PORT=$4
	serve_pair "$@" || rc=1
	((rc)) || side_by_side "throughput $name component: wrk GET /, ${WRK_CONNECTIONS} connections" req/s higher \
		wrk_pair_fabricks wrk_pair_runc || rc=1
	stop_prefix "bc-$name-"
	return "$rc"
}

throughput_py() { component_throughput py-http "$WASM_PY" "$ROOTFS_PY" 18410 "$PY_BIN" /app/py_http.py; }
throughput_js() { component_throughput js-http "$WASM_JS" "$ROOTFS_JS" 18412 "$NODE_BIN" /app/js_http.js; }

# trivial_costs: RUNS wrk runs against one trivial-http task, then a graceful stop; the shim
# logs the mean costs of every instance it made, which become the rows (Fabricks only: runc
# has no per-request instance).
trivial_costs() {
	local port=18414 mark i rps=() v line
	mark=$(wc -l <"$W/containerd.log")
	c run -d --null-io --net-host --runtime "$RT" --env "FABRICKS_LISTEN=http=127.0.0.1:$port" "$WASM_TRIVIAL" bc-trivial >/dev/null &&
		wait_http "http://127.0.0.1:$port/" || why "trivial-http did not come up" || return
	for ((i = 0; i < RUNS; i++)); do
		v=$(wrk_at "$port") || return
		rps+=("$v")
	done
	c task kill -s SIGTERM bc-trivial >/dev/null && wait_status bc-trivial STOPPED "$STOP_WAIT" || why "trivial-http did not stop on SIGTERM" || return
	stop_prefix bc-trivial
	line=$(tail -n +"$((mark + 1))" "$W/containerd.log" | grep -o '[0-9]* instances, mean per request: [^"]*' | tail -n 1)
	[[ -n $line ]] || why "the shim logged no instance costs for trivial-http" || return
	note "shim: $line"
	record "throughput trivial component: wrk GET /" req/s higher "$(median "${rps[@]}")" ''
	local phase value
	for phase in instantiate handle teardown; do
		value=$(grep -o "$phase [0-9.]* us" <<<"$line" | awk '{ print $2 }')
		[[ -n $value ]] || why "no $phase figure in: $line" || return
		record "per request, trivial component: $phase" us lower "$value" ''
	done
}

components_bench() {
	check "throughput py-http component vs CPython http.server" throughput_py
	check "throughput js-http component vs Node http" throughput_js
	check "per-request host cost of a trivial component" trivial_costs
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	# shellcheck source=lib.sh
	. "$(dirname "$0")/lib.sh"
	# shellcheck source=http.sh
	. "$BENCH/http.sh"
	bench_setup
	components_setup
	components_bench
	bench_finish "$@"
fi
