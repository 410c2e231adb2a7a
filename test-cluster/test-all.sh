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
prep=()
trap 'rm -rf "$log"' EXIT

echo "== prerequisites"
# protoc: containerd's gRPC bindings are generated at build time.
if ! command -v protoc >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends protobuf-compiler pkg-config >/dev/null
fi
test-cluster/harness.sh install all
# The Kubernetes cases' long poles start now, in the background at low priority, and
# e2e-k8s.sh waits for them at the end (each holds a lock): Kubernetes built from source (CPU),
# and, only where KVM may run the node VM (`vm.sh kvm` says why not otherwise; the cases then
# run on a node on this host), the VM image (debootstrap: mostly downloads). Their output is
# shown if e2e-k8s fails.
setsid test-cluster/vm/k8s.sh build >"$log/kube-build" 2>&1 &
prep+=($!)
if test-cluster/vm/vm.sh kvm >"$log/kvm"; then
	test-cluster/vm/vm.sh install
	setsid nice -n 10 test-cluster/vm/vm.sh image >"$log/vm-image" 2>&1 &
	prep+=($!)
else
	echo "no node VM here: $(<"$log/kvm")"
fi
trap 'for p in "${prep[@]}"; do kill -- "-$p" 2>/dev/null || true; done; rm -rf "$log"' EXIT

echo "== style: cargo fmt --check, clippy -D warnings"
rc=0
cargo fmt --all --check || { echo "not ok - cargo fmt --check: run cargo fmt --all"; rc=1; }
cargo clippy --workspace --all-targets --locked --release -- -D warnings || { echo "not ok - cargo clippy"; rc=1; }

echo "== build"
cargo build --release --locked --workspace
# Preview-2 test components from real toolchains (componentize-py, componentize-js, runwasi's
# crate): the component tests in cargo test and e2e-components.sh run on them.
export FABRICKS_TEST_COMPONENTS=${FABRICKS_TEST_COMPONENTS:-$HOME/.cache/fabricks/test-components}
test-cluster/components/build.sh

echo "== cargo test"
cargo test --release --locked --workspace --no-fail-fast 2>&1 | tee "$log/cargo" || rc=1

echo "== go test"
# test-cluster/cri/client: the CRI client's unit tests (its end-to-end tests run in e2e-cri.sh).
for mod in sdk/go examples/go-hello examples/go-http test-cluster/cri/client; do
	(cd "$mod" && go test -v -count=1 ./...) 2>&1 | tee -a "$log/go" || rc=1
done

echo "== fuzz: each target for 60 s (cargo fuzz, libFuzzer + AddressSanitizer)"
test-cluster/fuzz.sh 2>&1 | tee "$log/e2e" || rc=1

echo "== end to end: command modules"
test-cluster/e2e.sh 1.6 2 2>&1 | tee -a "$log/e2e" || rc=1
echo "== end to end: HTTP services"
test-cluster/e2e-http.sh 1.6 2 2>&1 | tee -a "$log/e2e" || rc=1
echo "== end to end: preview-2 components (wasi:cli, wasi:sockets, wasi:http)"
test-cluster/e2e-components.sh 1.6 2 2>&1 | tee -a "$log/e2e" || rc=1
echo "== end to end: .NET (AppBundles; the .NET examples where dotnet with a WASI route is installed)"
test-cluster/e2e-dotnet.sh 1.6 2 2>&1 | tee -a "$log/e2e" || rc=1
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
echo "== Kubernetes: a node (the VM with KVM: systemd, cgroup v2; else this host: cgroup v1) with kubelet on containerd 2.x, helm install, the cases"
if ! test-cluster/e2e-k8s.sh 2>&1 | tee -a "$log/e2e"; then
	rc=1
	tail -n 20 "$log/kube-build" "$log/vm-image" 2>/dev/null | sed 's/^/# /'
fi

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
