#!/usr/bin/env bash
# The node installer (fabricks-node-installer) against real containerd configs. For each
# flavour (Debian's containerd 1.6, the built 2.x) that containerd's own default config
# (`containerd config default`, given the harness's private paths) sits in a fake host root;
# the installer runs twice (the second run changes nothing), the real containerd starts on the
# edited config and serves go-http as a CRI pod with handler `fabricks` from the shim the
# installer copied; uninstall then restores the config byte for byte, and the same containerd
# on it refuses the handler again (the CRI cases are Go tests: TestInstalledShim and
# TestHandlerRefused in cri/e2e). Without containerd: k3s/RKE2 templates, a node without a
# config, a config that does not parse, a failed restart, the installer image, the node label.
#
# Usage: e2e-install.sh [1.6|2]...   (default both; env as for harness.sh and lib/suite.sh).
# Prints one line per case and ends with `N passed, N failed`.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-harness}
# shellcheck source=lib/suite.sh
source "$HERE/lib/suite.sh"

readonly IMG=localhost/go-http:latest
INSTALLER=$REPO/target/release/fabricks-node-installer
SET_KEYS=$REPO/target/release/set-keys
IMAGE_TOOL=$REPO/target/release/fabricks-installer-image
readonly SHIM_ON_HOST=usr/local/bin/containerd-shim-fabricks-v1
readonly CONFIG_ON_HOST=etc/containerd/config.toml

suite_begin e2e-install fh-install-e2e
NOFLAVOUR=local
API_PID=''
suite_stop() { if [[ -n $API_PID ]]; then kill "$API_PID" 2>/dev/null; fi; }

# installer ACTION ROOT [ARGS...]: the installer on the fake host root ROOT; never restarts
# anything (this suite starts containerd itself) and labels no node.
installer() {
	local action=$1 root=$2
	shift 2
	run_cmd env -u NODE_NAME RUST_LOG=warn "$INSTALLER" "$action" --host-root "$root" --shim "$FABRICKS_SHIM" --no-restart "$@"
	CMD="fabricks-node-installer $action --host-root $root ${*}"
}

expect_no_change() {
	expect_rc 0 || return
	[[ $OUT == "fabricks-node-installer $1: no change" ]] || why "the second $1 reported: $OUT"
}

# same FILE1 FILE2 WHAT: byte for byte.
same() { cmp -s "$1" "$2" || why "$3: $(diff "$1" "$2" | head -n 20)"; }

# --- preparation ---------------------------------------------------------------------------

# What the cases use besides the harness's packages: jq (archives), openssl (the API server's
# test PKI), curl, python3 (the API server stand-in).
tools() {
	local t missing=()
	for t in jq openssl curl python3; do command -v "$t" >/dev/null || missing+=("$t"); done
	((${#missing[@]})) || return 0
	apt-get update -qq >/dev/null 2>&1
	run_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	expect_rc 0
}

build_all() {
	run_cmd cargo build --release --manifest-path "$REPO/Cargo.toml" -p containerd-shim-fabricks -p fabricks \
		-p fabricks-installer -p fabricks-installer-image -p fabricks-test-tools
	expect_rc 0 || return
	[[ -x $INSTALLER && -x $SET_KEYS && -x $IMAGE_TOOL && -x $FABRICKS_SHIM && -x $FABRICKS ]] || why "a binary is missing"
}

build_http() { copy_sources && build_image "$TMP/src/examples/go-http" "$IMG" "$TMP/go-http.tar"; }

# --- cases without containerd --------------------------------------------------------------

broken_config() {
	local root=$TMP/broken
	mkdir -p "$root/etc/containerd"
	printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n' >"$root/$CONFIG_ON_HOST"
	cp "$root/$CONFIG_ON_HOST" "$TMP/broken.orig"
	installer install "$root"
	expect_rc 1 || return
	expect_err_re '/etc/containerd/config.toml is not valid TOML.*nothing was changed' || return
	same "$TMP/broken.orig" "$root/$CONFIG_ON_HOST" "the broken config was touched" || return
	[[ ! -e $root/$CONFIG_ON_HOST.fabricks-backup ]] || why "a backup was written for a refused config"
}

missing_config() {
	local root=$TMP/bare
	mkdir -p "$root"
	installer install "$root" --containerd-version 2
	expect_rc 0 && expect_out "registered runtime" || return
	[[ $(head -n1 "$root/$CONFIG_ON_HOST") == "version = 3" ]] || why "the new config does not start with version = 3" || return
	grep -qF '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.fabricks]' "$root/$CONFIG_ON_HOST" || why "no fabricks runtime in the new config" || return
	installer uninstall "$root"
	expect_rc 0 || return
	[[ ! -e $root/$CONFIG_ON_HOST && ! -e $root/$SHIM_ON_HOST ]] || why "uninstall left $(cd "$root" && find . -type f)"
}

# A restart that fails (here: no such unit, or no host PID 1 to enter) fails the run and is
# owed: the next run retries it instead of reporting no change.
restart_owed() {
	local root=$TMP/restart marker attempt
	mkdir -p "$root/etc/containerd" && printf 'version = 2\n' >"$root/$CONFIG_ON_HOST"
	marker=$root/$CONFIG_ON_HOST.fabricks-restart-pending
	for attempt in first second; do
		run_cmd env -u NODE_NAME RUST_LOG=warn "$INSTALLER" install --host-root "$root" --shim "$FABRICKS_SHIM" --unit fabricks-e2e-no-such.service
		[[ $RC == 1 ]] || why "the $attempt run did not fail (exit $RC)" || return
		expect_err_re 'restarting containerd; the next run retries' && [[ -e $marker ]] || return
	done
	installer install "$root"
	expect_no_change install
}

# k3s writes containerd's config (here a version 3 one, as for its containerd 2.x) at every
# start: the installer writes config-v3.toml.tmpl, base template first, and leaves config.toml.
k3s_template() {
	local root=$TMP/k3s dir=var/lib/rancher/k3s/agent/etc/containerd
	mkdir -p "$root/$dir"
	printf 'version = 3\nroot = "/var/lib/rancher/k3s/agent/containerd"\n' >"$root/$dir/config.toml"
	cp "$root/$dir/config.toml" "$TMP/k3s.generated"
	installer install "$root"
	expect_rc 0 || return
	[[ $(head -n1 "$root/$dir/config-v3.toml.tmpl") == '{{ template "base" . }}' ]] || why "the template does not start with the base template" || return
	grep -qF '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.fabricks]' "$root/$dir/config-v3.toml.tmpl" || why "no fabricks runtime in the template" || return
	same "$TMP/k3s.generated" "$root/$dir/config.toml" "k3s's generated config was edited" || return
	installer install "$root"
	expect_no_change install || return
	installer uninstall "$root"
	expect_rc 0 || return
	[[ ! -e $root/$dir/config-v3.toml.tmpl ]] || why "uninstall left the template"
}

# RKE2 with containerd 1.7 (version 2) and a template of the user's: our block is appended,
# uninstall gives their template back byte for byte.
rke2_template() {
	local root=$TMP/rke2 dir=var/lib/rancher/rke2/agent/etc/containerd
	mkdir -p "$root/$dir"
	printf 'version = 2\n' >"$root/$dir/config.toml"
	printf '{{ template "base" . }}\n\n# ours\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n' >"$root/$dir/config.toml.tmpl"
	cp "$root/$dir/config.toml.tmpl" "$TMP/rke2.tmpl"
	installer install "$root"
	expect_rc 0 || return
	grep -qF '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.fabricks]' "$root/$dir/config.toml.tmpl" || why "no fabricks runtime in the template" || return
	installer install "$root"
	expect_no_change install || return
	installer uninstall "$root"
	expect_rc 0 || return
	same "$TMP/rke2.tmpl" "$root/$dir/config.toml.tmpl" "the user's template was not restored"
}

# The chart's image, built without docker, is self-contained: its installer runs in a chroot
# of the image's own filesystem and, with its defaults (the shim from /opt/fabricks, the host
# at /host), installs onto a host root placed there.
installer_image() {
	local root=$TMP/image-root manifest layer
	run_cmd "$IMAGE_TOOL" -o "$TMP/installer.tar" -t localhost/fabricks/node-installer:test
	expect_rc 0 || return
	[[ $(tar -xOf "$TMP/installer.tar" index.json | jq -r '.manifests[0].platform | .os + "/" + .architecture') == linux/amd64 ]] ||
		why "the image is not for linux/amd64" || return
	manifest=$(tar -xOf "$TMP/installer.tar" index.json | jq -r '.manifests[0].digest')
	layer=$(tar -xOf "$TMP/installer.tar" "blobs/sha256/${manifest#sha256:}" | jq -r '.layers[0].digest')
	mkdir -p "$root/host" && tar -xOf "$TMP/installer.tar" "blobs/sha256/${layer#sha256:}" | tar -xz -C "$root" ||
		why "cannot unpack the image's layer" || return
	run_cmd env -u NODE_NAME RUST_LOG=warn chroot "$root" /usr/local/bin/fabricks-node-installer install --no-restart --containerd-version 1
	expect_rc 0 && expect_out "copied the shim" && expect_out "registered runtime" || return
	same "$FABRICKS_SHIM" "$root/host/$SHIM_ON_HOST" "the shim the image installed differs" || return
	[[ $(head -n1 "$root/host/$CONFIG_ON_HOST") == "version = 2" ]] || why "the new config is not version 2 (containerd 1)" || return
	run_cmd env -u NODE_NAME RUST_LOG=warn chroot "$root" /usr/local/bin/fabricks-node-installer uninstall --no-restart
	expect_rc 0 || return
	[[ -z $(find "$root/host" -type f) ]] || why "uninstall left $(find "$root/host" -type f)" || return
	note "image $(du -h "$TMP/installer.tar" | cut -f1): $(tar -xOf "$TMP/installer.tar" "blobs/sha256/${layer#sha256:}" | tar -tz | grep -v '/$' | paste -sd' ')"
}

# A stand-in for the API server's nodes endpoint: TLS from a CA of its own, every PATCH
# appended as JSON to a file. Prints its port.
fake_api_server() {
	cat >"$TMP/api.py" <<'PY'
import http.server, json, ssl, sys

class Nodes(http.server.BaseHTTPRequestHandler):
    def do_PATCH(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        seen = {"path": self.path, "auth": self.headers.get("Authorization"),
                "type": self.headers.get("Content-Type"), "body": body}
        with open(sys.argv[3], "a") as f:
            f.write(json.dumps(seen, sort_keys=True) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Nodes)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
	local d=$TMP/pki
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" -days 1 -subj /CN=fake-kube-ca \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1 &&
		openssl req -newkey rsa:2048 -nodes -keyout "$d/api.key" -out "$d/api.csr" -subj /CN=kubernetes >/dev/null 2>&1 &&
		printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext" &&
		openssl x509 -req -in "$d/api.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 1 \
			-extfile "$d/ext" -out "$d/api.crt" >/dev/null 2>&1 || why "openssl could not make the test PKI" || return
	python3 "$TMP/api.py" "$d/api.crt" "$d/api.key" "$TMP/patches" >"$TMP/api.port" 2>"$TMP/api.err" </dev/null &
	API_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -s $TMP/api.port ]] && return 0
		sleep 0.1
	done
	why "the fake API server did not start: $(cat "$TMP/api.err")"
}

# The label: install and uninstall in the image's rootfs with a pod's service account and
# environment send the API server a merge patch of the node's labels, over TLS verified
# against the account's CA, with its token.
node_label() {
	local root=$TMP/image-root account want
	[[ -x $root/usr/local/bin/fabricks-node-installer ]] || why "no unpacked installer image" || return
	fake_api_server || return
	account=$root/var/run/secrets/kubernetes.io/serviceaccount
	mkdir -p "$account" && cp "$TMP/pki/ca.crt" "$account/ca.crt" && printf 'test-token\n' >"$account/token"
	for action in install uninstall; do
		run_cmd env RUST_LOG=warn NODE_NAME=node-a KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$(cat "$TMP/api.port")" \
			chroot "$root" /usr/local/bin/fabricks-node-installer "$action" --no-restart --containerd-version 1
		expect_rc 0 || return
	done
	want='{"auth": "Bearer test-token", "body": {"metadata": {"labels": {"fabricks.io/runtime": "installed"}}}, "path": "/api/v1/nodes/node-a", "type": "application/merge-patch+json"}
{"auth": "Bearer test-token", "body": {"metadata": {"labels": {"fabricks.io/runtime": null}}}, "path": "/api/v1/nodes/node-a", "type": "application/merge-patch+json"}'
	OUT=$(cat "$TMP/patches" 2>/dev/null)
	[[ $OUT == "$want" ]] || why "the API server saw: ${OUT:-nothing}" || return
	# The control: with another CA in the account the server's certificate is refused.
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/pki/other.key" -out "$account/ca.crt" -days 1 \
		-subj /CN=other-ca -addext basicConstraints=critical,CA:TRUE >/dev/null 2>&1 || why "openssl failed" || return
	run_cmd env RUST_LOG=warn NODE_NAME=node-a KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$(cat "$TMP/api.port")" \
		chroot "$root" /usr/local/bin/fabricks-node-installer uninstall --no-restart
	[[ $RC == 1 ]] || why "a server with a certificate from another CA was accepted" || return
	expect_err_re 'PATCH https://127\.0\.0\.1:[0-9]+/api/v1/nodes/node-a' || return
	[[ $(wc -l <"$TMP/patches") == 2 ]] || why "the API server got a patch through an unverified connection"
}

# --- per flavour: a real containerd on the edited config -----------------------------------

# The flavour's default config with this harness's paths: its root, state, sockets, temp dir
# and NRI socket; CRI with the local pause image, CNI from the harness's conf dir, what an
# unprivileged-enough test host needs; and the fake host's /usr/local as containerd's opt
# dir, whose bin/ containerd puts on its PATH: the shim CRI starts is the installer's copy.
node_config() {
	local bin=${CTR%/ctr} cri keys
	mkdir -p "$ROOT/etc/containerd" || return
	run_cmd "$bin/containerd" config default
	expect_rc 0 || return
	printf '%s\n' "$OUT" >"$TMP/$F-default.toml"
	keys=("root=\"$W/root\"" "state=\"$W/state\"" "plugins.\"io.containerd.internal.v1.opt\".path=\"$ROOT/usr/local\""
		"plugins.\"io.containerd.grpc.v1.cri\".disable_tcp_service=true"
		"plugins.\"io.containerd.grpc.v1.cri\".stream_server_address=\"127.0.0.1\""
		"plugins.\"io.containerd.grpc.v1.cri\".stream_server_port=\"0\"")
	if [[ $F == 2 ]]; then
		cri=io.containerd.cri.v1.runtime
		# 2.4's schema 4 configures the sockets in the server plugins.
		keys+=("plugins.\"io.containerd.server.v1.grpc\".address=\"$SOCK\"" "plugins.\"io.containerd.server.v1.ttrpc\".address=\"$SOCK.ttrpc\""
			"temp=\"$W/tmp\"" "plugins.\"io.containerd.nri.v1.nri\".socket_path=\"$W/nri.sock\""
			"plugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox=\"localhost/fabricks/pause:3\""
			"plugins.\"$cri\".cni.bin_dirs=[\"/usr/lib/cni\"]")
	else
		cri=io.containerd.grpc.v1.cri
		keys+=("grpc.address=\"$SOCK\"" "ttrpc.address=\"$SOCK.ttrpc\"" "plugins.\"$cri\".sandbox_image=\"localhost/fabricks/pause:3\"" "plugins.\"$cri\".cni.bin_dir=\"/usr/lib/cni\"")
	fi
	keys+=("plugins.\"$cri\".restrict_oom_score_adj=true" "plugins.\"$cri\".netns_mounts_under_state_dir=true"
		"plugins.\"$cri\".cni.conf_dir=\"$W/cni/conf\"" "plugins.\"$cri\".cni.max_conf_num=1")
	run_cmd "$SET_KEYS" "$TMP/$F-default.toml" "${keys[@]}"
	expect_rc 0 || return
	printf '%s\n' "$OUT" >"$ROOT/$CONFIG_ON_HOST"
	# Never the host's own containerd: no default socket, root or state may remain.
	! grep -nE "'?\"?(/run/containerd|/var/lib/containerd)['\"/]" "$ROOT/$CONFIG_ON_HOST" ||
		why "the config still names a default path of the host's containerd" || return
	cp "$ROOT/$CONFIG_ON_HOST" "$TMP/$F-original.toml"
	! grep -qF fabricks "$TMP/$F-default.toml" || why "the default config already names fabricks"
}

install_first() {
	installer install "$ROOT"
	expect_rc 0 && expect_out "copied the shim to /$SHIM_ON_HOST" && expect_out "registered runtime \`fabricks\` in /$CONFIG_ON_HOST" || return
	same "$TMP/$F-original.toml" "$ROOT/$CONFIG_ON_HOST.fabricks-backup" "the backup differs from the original" || return
	same "$FABRICKS_SHIM" "$ROOT/$SHIM_ON_HOST" "the shim on the host differs" || return
	# Only lines were added: the user's comments and other runtimes are untouched.
	! diff "$TMP/$F-original.toml" "$ROOT/$CONFIG_ON_HOST" | grep -q '^<' ||
		why "lines of the original changed: $(diff "$TMP/$F-original.toml" "$ROOT/$CONFIG_ON_HOST" | head -n 20)" || return
	cp "$ROOT/$CONFIG_ON_HOST" "$TMP/$F-installed.toml"
	note "added to the config: $(diff "$TMP/$F-original.toml" "$ROOT/$CONFIG_ON_HOST" | grep -c '^>') lines"
}

install_again() {
	installer install "$ROOT"
	expect_no_change install || return
	same "$TMP/$F-installed.toml" "$ROOT/$CONFIG_ON_HOST" "the second run changed the config"
}

# up_on CONFIG: the harness's containerd (with CRI and its CNI) on CONFIG as it is.
up_on() { harness_up_cri "$1" && same "$1" "$W/config.toml" "containerd does not run on the given config"; }

uninstall_restores() {
	installer uninstall "$ROOT"
	expect_rc 0 && expect_out "restored /$CONFIG_ON_HOST" && expect_out "removed /$SHIM_ON_HOST" || return
	same "$TMP/$F-original.toml" "$ROOT/$CONFIG_ON_HOST" "the config is not the original" || return
	[[ ! -e $ROOT/$SHIM_ON_HOST && ! -e $ROOT/$CONFIG_ON_HOST.fabricks-backup ]] || why "the shim or the backup is still there"
}

uninstall_again() {
	installer uninstall "$ROOT"
	expect_no_change uninstall
}

flavour_cases() {
	use_flavour
	ROOT=$TMP/host-$F
	check "containerd config default, with the harness's paths, is the node's config" node_config || return
	check "install: copies the shim, registers the runtime, keeps a backup, only adds lines" install_first || return
	check "install again: no change" install_again
	if check "containerd $F starts on the edited config (CRI)" up_on "$ROOT/$CONFIG_ON_HOST" &&
		check "import go-http into k8s.io" import_image "$TMP/go-http.tar" "$IMG" wasi/wasm k8s.io; then
		go_cases FABRICKS_CRI_INSTALLED_SHIM="$ROOT/$SHIM_ON_HOST" FABRICKS_CRI_HTTP_IMAGE="$IMG" -- -run '^TestInstalledShim$' ./e2e/
	fi
	check "down" harness_down
	check "uninstall: config byte for byte the original, shim and backup gone" uninstall_restores
	check "uninstall again: no change" uninstall_again
	if check "containerd $F starts on the restored config (CRI)" up_on "$ROOT/$CONFIG_ON_HOST"; then
		go_cases FABRICKS_CRI_REFUSED_HANDLER=fabricks -- -run '^TestHandlerRefused$' ./e2e/
	fi
	check "down" harness_down
	check "leftovers after down" nothing_left
}

# --- main ----------------------------------------------------------------------------------

set_flavours "$@"
started=$SECONDS
prepared=1
check "install prerequisites" install_prerequisites || prepared=0
check "tools: jq, openssl, curl, python3" tools || prepared=0
check "cargo build shim, CLI, installer" build_all || prepared=0
((prepared)) || suite_abort "preparation failed"
check "a config that does not parse: exit 1, says so, file untouched, no backup" broken_config
check "no config: created (version 3 for containerd 2), uninstall removes it" missing_config
check "a failed restart: exit 1, and the next run restarts again (not 'no change')" restart_owed
check "k3s (containerd 2): config-v3.toml.tmpl from the base template; twice; uninstall" k3s_template
check "RKE2 (containerd 1.7): block added to the user's template; twice; uninstall restores it" rke2_template
if check "installer image (no docker): linux/amd64, runs in its own rootfs, installs onto /host with its defaults" installer_image; then
	check "node label: install/uninstall PATCH the node over TLS with the service account; a foreign CA is refused" node_label
fi
if check "fabricks build go-http" build_http; then
	for F in "${flavours[@]}"; do
		t=$SECONDS
		flavour_cases
		echo "# e2e-install: [$F] $((SECONDS - t)) s"
		F=''
	done
fi
echo "# e2e-install: $((SECONDS - started)) s"
suite_end
