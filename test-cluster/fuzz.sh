#!/usr/bin/env bash
# The fuzz targets (test-cluster/fuzz, cargo fuzz with libFuzzer and AddressSanitizer), each
# for a bounded time: what Fabricks reads from outside — listen specs, image indexes,
# manifests, configs and layers, the node's containerd config, the reactor ABI's request and
# response heads and its host calls on guest memory. A crash fails its case and leaves the
# input in test-cluster/fuzz/artifacts/TARGET/ (turn it into a unit test). The corpora grow
# across runs on one machine, under $HOME/.cache/fabricks/fuzz.
#
# Usage: fuzz.sh [SECONDS per target, default $FABRICKS_FUZZ_SECONDS or 60]. Stable Rust:
# RUSTC_BOOTSTRAP=1 lets cargo fuzz pass the sanitizer flags. Ends with `N passed, N failed`.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-harness}
# shellcheck source=lib/suite.sh
source "$HERE/lib/suite.sh"

readonly CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${1:-${FABRICKS_FUZZ_SECONDS:-60}}
CORPORA=${FABRICKS_FUZZ_CORPORA:-$HOME/.cache/fabricks/fuzz}
TARGETS=(listen_spec image_documents containerd_config reactor_calls reactor_heads)
export RUSTC_BOOTSTRAP=1

suite_begin fuzz fh-fuzz

# fuzz VERB ARGS...: cargo fuzz on this directory's targets.
fuzz() {
	local verb=$1
	shift
	cargo fuzz "$verb" --fuzz-dir "$HERE/fuzz" "$@"
}

tools() {
	if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
		run_cmd cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
		expect_rc 0 || return
	fi
	run_cmd fuzz build -O
	expect_rc 0
}

# Seeds written by this script, so each target starts from inputs that get deep.
seed() {
	mkdir -p "${TARGETS[@]/#/$CORPORA/}"
	printf 'http=8080' >"$CORPORA/listen_spec/seed-1"
	printf 'http=0.0.0.0:8080,admin=[::1]:9090' >"$CORPORA/listen_spec/seed-2"
	printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n' \
		>"$CORPORA/containerd_config/seed-1"
	printf 'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd]\n  default_runtime_name = "runc"\n' \
		>"$CORPORA/containerd_config/seed-2"
	{
		printf '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", '
		printf '"config": {"mediaType": "application/vnd.oci.image.config.v1+json"}, '
		printf '"layers": [{"mediaType": "application/vnd.wasm.content.layer.v1+wasm", "annotations": {"org.opencontainers.image.title": "app.wasm"}}]}'
		printf '\n--\n{"os": "wasip1", "architecture": "wasm", "config": {"Entrypoint": ["/app.wasm"]}, "rootfs": {"type": "layers", "diff_ids": []}}'
		printf '\n--\n\0asm\1\0\0\0'
	} >"$CORPORA/image_documents/seed-1"
}

# crash_notes NAME: the failed assertion and each crashing input, escaped, as notes, so that
# a CI log alone is enough to write the unit test.
crash_notes() {
	local input line
	while IFS= read -r line; do note "$line"; done < <(grep -A4 'panicked' <<<"$ERR" | grep -v '^stack backtrace' | head -n 5)
	for input in "$HERE/fuzz/artifacts/$1"/*; do
		[[ -f $input ]] || continue
		note "input $(basename "$input"): $(python3 -c 'import sys; print(repr(open(sys.argv[1], "rb").read()[:2000]))' "$input")"
	done
}

# run_target NAME: fuzzes NAME for SECONDS_EACH; fails on a crash, notes runs and corpus size.
run_target() {
	local runs files bytes
	run_cmd fuzz run -O "$1" "$CORPORA/$1" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1
	runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' <<<"$ERR")
	files=$(find "$CORPORA/$1" -type f | wc -l)
	bytes=$(du -sb "$CORPORA/$1" | cut -f1)
	if ((RC != 0)) && grep -q 'artifact_prefix\|Test unit written' <<<"$ERR"; then
		crash_notes "$1"
		why "$(grep -m1 -E 'panicked|ERROR: ' <<<"$ERR"); the input is in $HERE/fuzz/artifacts/$1/" || return
	fi
	expect_rc 0 || return
	note "$1: ${runs:-?} runs in ${SECONDS_EACH}s, corpus $files inputs ($bytes bytes)"
}

check "cargo-fuzz $CARGO_FUZZ_VERSION, the targets built (ASan)" tools &&
	seed &&
	for t in "${TARGETS[@]}"; do
		check "fuzz $t for ${SECONDS_EACH}s: no crash" run_target "$t"
	done
suite_end
