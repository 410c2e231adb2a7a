#!/usr/bin/env bash
# Builds the preview-2 test components with other people's real toolchains, from their
# registries, into $FABRICKS_TEST_COMPONENTS:
#   py-cli.wasm, py-http.wasm    componentize-py (PyPI)
#   js-cli.wasm, js-http.wasm    componentize-js (npm; WASI WIT from jco's package)
#   component-hello-world.wasm   runwasi's prebuilt test component (crates.io crate
#                                containerd-shim-wasm-test-modules, fetched by cargo)
# Tools install under ~/.cache/fabricks/components (a venv, an npm prefix). Idempotent: a
# run whose inputs (this directory, the tool versions) are unchanged does nothing.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${FABRICKS_TEST_COMPONENTS:?set FABRICKS_TEST_COMPONENTS to the directory the components go to}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/fabricks/components

COMPONENTIZE_PY=0.25.1
COMPONENTIZE_JS=0.23.0
JCO=1.35.0
# The WASI WIT the Python worlds are written against (jco ships 0.2.12).
WASI_WIT=0.2.12
RUNWASI_MODULES=0.4.1
OUTPUTS=(py-cli.wasm py-http.wasm js-cli.wasm js-http.wasm component-hello-world.wasm)

inputs_hash() {
	{
		echo "$COMPONENTIZE_PY $COMPONENTIZE_JS $JCO $WASI_WIT $RUNWASI_MODULES"
		python3 --version
		node --version
		(cd "$HERE" && find . -type f -not -path "*/__pycache__/*" -print0 | sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -d' ' -f1
}

up_to_date() {
	[[ -f $OUT/.inputs && $(cat "$OUT/.inputs") == "$1" ]] || return 1
	for f in "${OUTPUTS[@]}"; do [[ -s $OUT/$f ]] || return 1; done
}

install_tools() {
	local venv=$CACHE/venv-componentize-py-$COMPONENTIZE_PY
	if [[ ! -x $venv/bin/componentize-py ]]; then
		echo "installing componentize-py $COMPONENTIZE_PY"
		python3 -m venv "$venv"
		"$venv/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY"
	fi
	PY=$venv/bin/componentize-py
	NPM_DIR=$CACHE/npm-componentize-js-$COMPONENTIZE_JS-jco-$JCO
	if [[ ! -x $NPM_DIR/node_modules/.bin/componentize-js ]]; then
		echo "installing componentize-js $COMPONENTIZE_JS, jco $JCO"
		mkdir -p "$NPM_DIR"
		echo '{"private": true}' >"$NPM_DIR/package.json"
		(cd "$NPM_DIR" && npm install --silent --no-audit --no-fund \
			"@bytecodealliance/componentize-js@$COMPONENTIZE_JS" "@bytecodealliance/jco@$JCO")
	fi
	JS=$NPM_DIR/node_modules/.bin/componentize-js
	JCO_WIT=$(find "$NPM_DIR/node_modules/@bytecodealliance/jco" -type d -path "*/wit/builtin/$WASI_WIT" | head -n1)
	[[ -n $JCO_WIT ]] || { echo "jco $JCO ships no WASI $WASI_WIT WIT" >&2; exit 1; }
}

# A WIT directory: our worlds ($1, VERSION replaced by $2) plus WASI's packages from jco,
# renumbered to $2 when the toolchain was built for another 0.2 release.
wit_dir() {
	local worlds=$1 version=$2 dir=$3
	mkdir -p "$dir/deps"
	sed "s/@VERSION/@$version/g" "$worlds" >"$dir/world.wit"
	cp -r "$JCO_WIT"/. "$dir/deps/"
	if [[ $version != "$WASI_WIT" ]]; then
		# Also makes `exit-with-code` stable: componentize-js has no switch for WIT features.
		find "$dir/deps" -name '*.wit' -exec sed -i \
			-e "s/@$WASI_WIT/@$version/g" -e '/@unstable(feature = cli-exit-with-code)/d' {} +
	fi
}

build_python() {
	local wit=$WORK/wit-python src=$WORK/python
	wit_dir "$HERE/wit/python.wit" "$WASI_WIT" "$wit"
	# From a copy: componentize-py leaves __pycache__ beside the sources it imports.
	cp -r "$HERE/python" "$src"
	echo "componentize-py: py-cli.wasm"
	"$PY" -q -d "$wit" -w fabricks:test/command --features cli-exit-with-code \
		componentize -p "$src/cli" app -o "$OUT/py-cli.wasm"
	echo "componentize-py: py-http.wasm"
	"$PY" -q -d "$wit" -w fabricks:test/service componentize -p "$src/http" app -o "$OUT/py-http.wasm"
}

build_js() {
	# StarlingMonkey exports and imports one WASI release; the worlds must name that one.
	local engine version
	engine=$NPM_DIR/node_modules/@bytecodealliance/componentize-js/lib/starlingmonkey_embedding.wasm
	version=$(grep -aoE 'wasi:http/incoming-handler@0\.2\.[0-9]+' "$engine" | head -n1 | cut -d@ -f2)
	[[ -n $version ]] || { echo "cannot tell which WASI release $engine speaks" >&2; exit 1; }
	local kind
	for kind in cli http; do
		local src=$WORK/js-$kind world=command
		[[ $kind == http ]] && world=service
		mkdir -p "$src"
		wit_dir "$HERE/wit/js.wit" "$version" "$src/wit"
		sed "s/@VERSION/@$version/g" "$HERE/js/$kind/app.js" >"$src/app.js"
		echo "componentize-js (WASI $version): js-$kind.wasm"
		(cd "$src" && "$JS" --wit wit -n "$world" -o "$OUT/js-$kind.wasm" app.js >"$WORK/js-$kind.log" 2>&1) ||
			{ cat "$WORK/js-$kind.log" >&2; exit 1; }
	done
}

# runwasi's prebuilt component, from its crate's source as cargo downloads it.
fetch_runwasi() {
	local project=$WORK/runwasi-modules
	mkdir -p "$project/src"
	cat >"$project/Cargo.toml" <<-EOF
		[package]
		name = "fetch-test-modules"
		version = "0.0.0"
		edition = "2021"
		[dependencies]
		containerd-shim-wasm-test-modules = "=$RUNWASI_MODULES"
	EOF
	: >"$project/src/lib.rs"
	(cd "$project" && cargo fetch --quiet)
	local manifest
	manifest=$(cd "$project" && cargo metadata --format-version 1 | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(next(p["manifest_path"] for p in meta["packages"] if p["name"] == "containerd-shim-wasm-test-modules"))')
	cp "$(dirname "$manifest")/src/modules/component-hello-world.wasm" "$OUT/"
	echo "runwasi $RUNWASI_MODULES: component-hello-world.wasm"
}

main() {
	local hash
	hash=$(inputs_hash)
	if up_to_date "$hash"; then
		echo "test components in $OUT are up to date"
		return
	fi
	mkdir -p "$OUT" "$CACHE"
	WORK=$(mktemp -d)
	trap 'rm -rf "$WORK"' EXIT
	install_tools
	rm -f "$OUT/.inputs"
	build_python
	build_js
	fetch_runwasi
	echo "$hash" >"$OUT/.inputs"
	echo "test components built into $OUT"
}

main "$@"
