#!/usr/bin/env bash
# Every Fabricks test on this machine: the workspace's unit and integration tests (cargo),
# the Go packages' tests, then the end-to-end suites against real containerds (Debian 1.6
# and a built 2.x, through ctr and CRI: the CRI cases are Go tests in test-cluster/cri/e2e) with
# the freshly built shim, a 50-cycle soak, the node installer on their real configs, and the
# chart and manifests (helm, kubeconform, shellcheck). Installs what it needs; ends with one
# `total: N passed, N failed[, N skipped]` line.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/.."

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "== prerequisites"
# protoc: containerd's gRPC bindings are generated at build time.
if ! command -v protoc >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends protobuf-compiler pkg-config >/dev/null
fi
test-cluster/harness.sh install all

echo "== build"
cargo build --release --locked --workspace

echo "== cargo test"
rc=0
cargo test --release --locked --workspace 2>&1 | tee "$log/cargo" || rc=1

echo "== go test"
# test-cluster/cri/client: the CRI client's unit tests (its end-to-end tests run in e2e-cri.sh).
for mod in sdk/go examples/go-hello examples/go-http test-cluster/cri/client; do
	(cd "$mod" && go test -v -count=1 ./...) 2>&1 | tee -a "$log/go" || rc=1
done

echo "== end to end: command modules"
test-cluster/e2e.sh 1.6 2 2>&1 | tee "$log/e2e" || rc=1
echo "== end to end: HTTP services"
test-cluster/e2e-http.sh 1.6 2 2>&1 | tee -a "$log/e2e" || rc=1
echo "== end to end: registries"
test-cluster/e2e-registry.sh 2>&1 | tee -a "$log/e2e" || rc=1
echo "== end to end: pods through CRI"
test-cluster/e2e-cri.sh 1.6 2 2>&1 | tee -a "$log/e2e" || rc=1
# The short soak: 50 create/start/kill/delete cycles, counts before and after (bench/ has
# the 1000-cycle run and the benchmarks, which are not part of CI).
echo "== soak: 50 cycles"
FABRICKS_E2E_BUILD=0 bench/soak.sh --cycles 50 2>&1 | tee -a "$log/e2e" || rc=1
echo "== end to end: node installer on real containerd configs"
test-cluster/e2e-install.sh 1.6 2 2>&1 | tee -a "$log/e2e" || rc=1
echo "== Kubernetes manifests: helm lint/template, kubeconform -strict; shellcheck"
test-cluster/chart-check.sh 2>&1 | tee -a "$log/e2e" || rc=1

# One closing line for the whole run, so a run that tested nothing shows; what could not run
# (ignored Rust tests, skipped cases and Go tests) is counted as skipped.
passed=0 failed=0 skipped=0
while read -r p f s; do
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + ${s:-0}))
done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$log/cargo"
	sed -nE 's/^([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/\1 \2 \4/p' "$log/e2e"
	echo "$(grep -c '^--- PASS' "$log/go") $(grep -c '^--- FAIL' "$log/go") $(grep -c '^--- SKIP' "$log/go")")
if ((failed > 0)); then rc=1; fi
echo "total: $passed passed, $failed failed$( ((skipped == 0)) || echo ", $skipped skipped")"
exit "$rc"
