#!/usr/bin/env bash
# End-to-end tests of containerd-shim-fabricks-v1 against a real (private) containerd, driven
# through ctr: images built by `fabricks build`, args/env/exit status/stdin, a wasm-layer
# image, bind mounts, broken modules, missing entrypoints, kills, traps, a native entrypoint
# delegated to runc, the compile cache (compiled once, cached later starts, swept with the
# image), memory limits, cgroup placement; the stock runc runtime on the same harness (the
# baseline the shim's cases are read against); `down` stopping tasks still running, and
# nothing left behind.
#
# usage: e2e.sh [1.6|2]...      (default: both flavours; needs root, go and cargo)
#
# Cases print as lib/suite.sh says; the exit status is 1 if any case failed. Knobs (see
# lib/suite.sh for the common ones): FABRICKS_HARNESS_DIR (default /tmp/fabricks-e2e; the suite
# takes down whatever harness runs there: never share it with one you use by hand).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-e2e}
# shellcheck source-path=SCRIPTDIR source=lib/suite.sh
. "$HERE/lib/suite.sh"
readonly IMG_TAR=localhost/fabricks-e2e/go-hello:tar
readonly IMG_WASM=localhost/fabricks-e2e/go-hello:wasm
readonly PAUSE=localhost/fabricks/pause:3 RUNC=io.containerd.runc.v2
readonly IMG_PROBE=localhost/fabricks-e2e/fsprobe:latest

suite_begin e2e fabricks-e2e
RETRY_MISSING=1
DIGEST='' # sha256 of go-hello's module, as inside the image

# --- preparation (once) ------------------------------------------------------------------

# The module in the tar-layer archive (its layer holds /go-hello.wasm): $TMP/go-hello.wasm.
extract_module() {
	local archive=$TMP/go-hello-tar.tar manifest layer
	manifest=$(tar -xOf "$archive" index.json | grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1)
	layer=$(tar -xOf "$archive" "blobs/sha256/${manifest#sha256:}" |
		sed 's/.*"layers"//' | grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1)
	[[ -n $layer ]] || why "no layer found in $archive" || return
	tar -xOf "$archive" "blobs/sha256/${layer#sha256:}" >"$TMP/layer"
	tar -xOf "$TMP/layer" --wildcards '*go-hello.wasm' >"$TMP/go-hello.wasm" 2>/dev/null ||
		why "the image layer $layer holds no go-hello.wasm" || return
	[[ $(head -c 4 "$TMP/go-hello.wasm" | od -An -tx1 | tr -d ' ') == 0061736d ]] ||
		why "the image's go-hello.wasm is not a wasm module" || return
	DIGEST=$(sha256sum "$TMP/go-hello.wasm" | cut -d' ' -f1)
}

make_pause_image() {
	CMD="harness.sh pause-image $TMP/pause.tar"
	OUT=$("$H" pause-image "$TMP/pause.tar" 2>&1)
	RC=$?
	expect_rc 0
}

# Root filesystems for `ctr run --rootfs`: broken modules, a trapping module, an empty root.
make_rootfses() {
	local r=$TMP/rootfs
	mkdir -p "$r"/{junk,truncated,trap,empty}
	printf 'this is not WebAssembly\n' >"$r/junk/bad.wasm"
	# A real module cut in half: right magic and version, then the sections end mid-way.
	head -c "$(($(stat -c %s "$TMP/go-hello.wasm") / 2))" "$TMP/go-hello.wasm" >"$r/truncated/bad.wasm"
	# (module (func (export "_start") unreachable)) — type, function, export and code sections.
	printf '\0asm\1\0\0\0\1\4\1\140\0\0\3\2\1\0\7\12\1\6_start\0\0\12\5\1\3\0\0\13' >"$r/trap/trap.wasm"
	# (module (func (export "run") (result i32) i32.const 7)): no _start, one export to run.
	mkdir -p "$r/export"
	printf '\0asm\1\0\0\0\1\5\1\140\0\1\177\3\2\1\0\7\7\1\3run\0\0\12\6\1\4\0\101\7\13' >"$r/export/m.wasm"
	# A host file outside every rootfs, and a rootfs whose links point at it: absolute,
	# relative and through a directory link (as a hostile image layer would carry them).
	SECRET=secret-$RANDOM$RANDOM
	echo "$SECRET" >"$TMP/host-secret"
	mkdir -p "$r/escape"
	cp "$TMP/go-hello.wasm" "$r/escape/go-hello.wasm"
	ln -s "$TMP/host-secret" "$r/escape/abs"
	ln -s ../../host-secret "$r/escape/rel"
	ln -s "$TMP" "$r/escape/dir"
	ln -s /proc/self/environ "$r/escape/environ"
}

# --- cases ---------------------------------------------------------------------------------

hello_greets() {
	run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-hello
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_out "argv0: /go-hello.wasm" &&
		expect_out "GREETING: (unset)" && expect_gone e2e-hello
}

hello_args() {
	run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-args /go-hello.wasm a 'b c'
	expect_rc 0 && expect_out 'args: ["a" "b c"]' && expect_gone e2e-args
}

hello_env() {
	run_ctr run --rm --runtime "$RT" --env GREETING=bonjour "$IMG_TAR" e2e-env
	expect_rc 0 && expect_out "GREETING: bonjour" && expect_gone e2e-env
}

hello_exit() {
	run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-exit /go-hello.wasm --exit 7
	expect_rc 7 && expect_out "Hello from Fabricks!" && expect_gone e2e-exit
}

# ctr attaches its stdin to the task (both 1.6 and 2.x; 2.x has no -i). Non-empty on purpose:
# with empty stdin ctr closes its end of the FIFO before the task opens it and EOF is lost
# (a native task under runc never sees EOF through `ctr run` either).
hello_stdin() {
	printf 'fed through ctr\n' >"$TMP/stdin"
	IN=$TMP/stdin run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-stdin /go-hello.wasm --stdin
	expect_rc 0 && expect_out $'stdin (16 bytes):\nfed through ctr' && expect_gone e2e-stdin
}

# Four runs at a time, as on a node starting several pods, ten times: every create must find
# the stdio FIFOs ctr made for it. ctr opens their read ends from goroutines while it already
# asks for the task, so a runtime has to wait for its reader (runc's shim opens them blocking)
# rather than fail at once. Output ctr itself drops under load is not counted here.
concurrent_creates() {
	local i j rc n=0 bad=0 first='' pids
	for ((i = 1; i <= 10; i++)); do
		pids=()
		for ((j = 1; j <= 4; j++)); do
			c run --rm --runtime "$RT" "$IMG_TAR" "e2e-par-$i-$j" /go-hello.wasm --exit 3 </dev/null >"$TMP/par-$j" 2>&1 &
			pids+=($!)
		done
		for ((j = 1; j <= 4; j++)); do
			rc=0
			wait "${pids[j - 1]}" || rc=$?
			n=$((n + 1))
			if ((rc != 3)); then
				bad=$((bad + 1))
				[[ -n $first ]] || first="e2e-par-$i-$j: exit $rc: $(grep -m 1 -v '^Hello\|^runtime:\|^argv0:\|^args:\|^GREETING:' "$TMP/par-$j")"
			fi
		done
	done
	((bad == 0)) || why "$bad of $n \`ctr run --rm ... /go-hello.wasm --exit 3\` did not exit 3; first: $first"
}

wasm_layer_greets() {
	run_ctr run --rm --runtime "$RT" "$IMG_WASM" e2e-wasm
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_out "argv0: /go-hello.wasm" && expect_gone e2e-wasm
}

bind_rw() {
	local dir=$TMP/data-$F-rw
	mkdir -p "$dir"
	run_ctr run --rm --runtime "$RT" --mount "type=bind,src=$dir,dst=/data,options=rbind:rw" \
		"$IMG_TAR" e2e-bind-rw /go-hello.wasm --write /data/x
	expect_rc 0 && expect_out "wrote 20 bytes to /data/x" || return
	[[ $(cat "$dir/x" 2>/dev/null) == "written by go-hello" ]] || why "$dir/x on the host does not hold what the module wrote" || return
	expect_gone e2e-bind-rw
}

# ro_write ID: a write to a read-only bind mount; $dir holds the mount's source.
ro_write() {
	dir=$TMP/data-$F-$1
	mkdir -p "$dir"
	run_ctr run --rm --runtime "$RT" --mount "type=bind,src=$dir,dst=/data,options=rbind:ro" \
		"$IMG_TAR" "$1" /go-hello.wasm --write /data/y
}

bind_ro_refuses() {
	local dir
	ro_write e2e-bind-ro
	[[ $RC != timeout ]] || return 1
	[[ $RC != 0 ]] || why "the write to a read-only mount succeeded (exit 0)" || return
	[[ ! -e $dir/y ]] || why "the module created $dir/y through a read-only mount" || return
	expect_err_re '[Rr]ead-only file system' && expect_gone e2e-bind-ro
}

# The guest must see an ordinary EROFS, as a native program would: go-hello reports it and
# exits 1 (its documented behaviour), rather than the runtime trapping the module.
bind_ro_errno() {
	local dir
	ro_write e2e-bind-errno
	expect_rc 1 && expect_err_re '^go-hello: write /data/y: .*[Rr]ead-only file system' && expect_gone e2e-bind-errno
}

# rootfs_fails DIR ID REGEX [ARGS...]: `ctr run --rootfs DIR ID ARGS` fails at create with a
# message matching REGEX, and nothing is left.
rootfs_fails() {
	local dir=$1 id=$2 re=$3
	shift 3
	run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/$dir" "$id" "$@"
	[[ $RC != timeout ]] || return 1
	[[ $RC != 0 ]] || why "ctr run succeeded" || return
	expect_err_re "$re" && expect_gone "$id"
}

# kill_case ID SIGNAL STATUS FLAG [log]: a detached module runs FLAG's endless wait,
# `ctr task kill -s SIGNAL` stops it and it exits with STATUS. With `log` its output goes to a
# file (a file:// log URI) and the kill waits until the module says it is in that wait;
# otherwise its stdio are ctr's FIFOs, as `ctr run -d` makes them.
kill_case() {
	local id=$1 sig=$2 status=$3 flag=$4 log=$TMP/$F-$1.log opts=() args=(/go-hello.wasm "$4")
	if [[ $flag == --sleep ]]; then args+=(300s); fi
	if [[ ${5:-} == log ]]; then opts=(--log-uri "file://$log"); fi
	run_ctr run -d --runtime "$RT" "${opts[@]}" "$IMG_TAR" "$id" "${args[@]}"
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	if [[ ${5:-} == log ]]; then
		wait_file "$log" "$([[ $flag == --spin ]] && echo spinning || echo sleeping)" 60 || return
	fi
	run_ctr task kill -s "$sig" "$id"
	expect_rc 0 || return
	wait_status "$id" STOPPED "$STOP_WAIT" || why "$WHY (after $sig)" || return
	run_ctr task rm "$id"
	expect_rc 0 && expect_out "exit code $status" "the exit status" || return
	run_ctr containers rm "$id"
	expect_rc 0 && expect_gone "$id"
}

trap_reported() {
	run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/trap" e2e-trap /trap.wasm
	expect_rc 134 && expect_err_re 'trap' && expect_err_re 'wasm backtrace' &&
		expect_err_re 'unreachable' && expect_gone e2e-trap
}

# A module reads where its rootfs links and `..` lead out of it, the shim's own environment and
# another container's rootfs: each read fails (go-hello exits 1 saying why), none shows the file.
escape_denied() {
	local path denied=()
	for path in /abs /rel /dir/host-secret /environ /proc/self/environ "/../../..$TMP/host-secret" \
		"$TMP/host-secret" "/..$TMP/rootfs/trap/trap.wasm"; do
		run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/escape" e2e-escape /go-hello.wasm --read "$path"
		((RC == 1)) || why "--read $path: exit $RC, want 1 (denied)" || return
		[[ $OUT$ERR != *"$SECRET"* && $OUT != *"read "*" bytes from"* ]] || why "--read $path read it: $OUT" || return
		expect_out "go-hello: read $path" || return
		denied+=("$path: ${ERR##*: }")
	done
	expect_gone e2e-escape || return
	note "denied: $(printf '%s; ' "${denied[@]}")"
}

pause_native() {
	local id=e2e-pause
	run_ctr run -d --runtime "$RT" "$PAUSE" "$id"
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	[[ -d /run/containerd/fabricks/runc/$NS/$id ]] || why "no runc state: pause did not run under runc" || return
	finish "$id"
}

# go-hello is a command (no ports): its first starts ran Winch's baseline code, never a
# foreground Cranelift compile, and a detached child wrote the optimized cache entry.
first_start_baseline() {
	local n
	n=$(grep -c "compiled baseline code for .*/$DIGEST\.cwasm" "$W/containerd.log")
	((n >= 1)) || why "no \"compiled baseline code for .../$DIGEST.cwasm\" in $W/containerd.log" || return
	n=$(grep -c "compiled module .*/$DIGEST\.cwasm" "$W/containerd.log")
	((n == 0)) || why "$n foreground compiles of $DIGEST, want 0 (a command starts on baseline code)" || return
	local i
	for ((i = 0; i < 600; i++)); do
		compgen -G "$W/cache/*/$DIGEST.cwasm" >/dev/null && break
		sleep 0.2
	done
	compgen -G "$W/cache/*/$DIGEST.cwasm" >/dev/null || why "no $W/cache/*/$DIGEST.cwasm 120 s on" || return
	note "$(grep -c "compiled baseline code for .*/$DIGEST\.cwasm" "$W/containerd.log") starts on baseline code, then the optimized entry"
}

# A later start loads the cached module: a `using cached module` line, no `compiled module`.
second_start_cached() {
	local before
	before=$(wc -l <"$W/containerd.log")
	run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-cached
	expect_rc 0 && expect_gone e2e-cached || return
	tail -n +"$((before + 1))" "$W/containerd.log" >"$TMP/start-log"
	grep -q "using cached module .*/$DIGEST\.cwasm" "$TMP/start-log" ||
		why "no \"using cached module .../$DIGEST.cwasm\" in the shim log of this start" || return
	! grep -q "compiled module" "$TMP/start-log" || why "this start compiled: $(grep -m 1 'compiled module' "$TMP/start-log")"
}

# memory_case ID LIMIT_BYTES MIB: go-hello allocates MIB MiB under --memory-limit LIMIT.
memory_case() {
	run_ctr run --rm --runtime "$RT" --memory-limit "$2" "$IMG_TAR" "$1" /go-hello.wasm --alloc-mib "$3"
}

memory_within_limit() {
	memory_case e2e-mem-ok $((64 << 20)) 8
	expect_rc 0 && expect_out "allocated 8 MiB" && expect_gone e2e-mem-ok
}

# Past the limit: status 137 (as an OOM-killed process), the reason on stderr and a TaskOOM
# event (what makes CRI report OOMKilled).
memory_past_limit() {
	local events=$TMP/events-$F rc=0
	c events >"$events" 2>&1 &
	local watcher=$!
	memory_case e2e-mem-oom $((32 << 20)) 64
	kill "$watcher" 2>/dev/null
	wait "$watcher" 2>/dev/null || true
	expect_rc 137 && expect_err_re 'out of memory: the module asked for [0-9.]+ MiB of linear memory, past the container.s memory limit of 32\.0 MiB' || return
	[[ $OUT != *"allocated 64 MiB"* ]] || why "the module allocated past its limit" || return
	grep -q '/tasks/oom.*e2e-mem-oom' "$events" || why "no /tasks/oom event for e2e-mem-oom: $(grep -c . "$events") events seen" || return
	expect_gone e2e-mem-oom
}

# The task's pid is its runner, a process of its own, which sits with every thread in the
# container's cpu and cpuacct cgroups with its CPU limit; they are gone after delete.
cgroup_placement() {
	local id=e2e-cgroup dir pid threads
	run_ctr run -d --runtime "$RT" --cpus 0.5 "$IMG_TAR" "$id" /go-hello.wasm --sleep 300s
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	pid=$(task_pid "$id")
	[[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'containerd-shim-fabricks-v1 runner' ||
		why "task pid '$pid' is not a runner: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return
	! pgrep -f "containerd-shim-fabricks-v1 .*-address $W/containerd.sock" | grep -qx "$pid" || why "task pid $pid is the shim" || return
	for dir in /sys/fs/cgroup/cpu/$NS/$id /sys/fs/cgroup/cpuacct/$NS/$id; do
		[[ -d $dir ]] || why "no cgroup $dir" || return
		[[ $(cat "$dir/cgroup.procs") == "$pid" ]] || why "$dir/cgroup.procs holds '$(cat "$dir/cgroup.procs")', want the runner $pid alone" || return
		threads=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 -printf "%f\n" | sort)
		[[ $(sort "$dir/tasks") == "$threads" ]] || why "$dir/tasks is not every thread of runner $pid" || return
	done
	[[ $(cat "/sys/fs/cgroup/cpu/$NS/$id/cpu.cfs_quota_us") == 50000 ]] ||
		why "cpu.cfs_quota_us is $(cat "/sys/fs/cgroup/cpu/$NS/$id/cpu.cfs_quota_us"), want 50000 (--cpus 0.5)" || return
	run_ctr task metrics "$id"
	expect_rc 0 || return
	run_ctr task kill -s SIGKILL "$id"
	wait_status "$id" STOPPED "$STOP_WAIT" || return
	run_ctr task rm "$id"
	run_ctr containers rm "$id"
	expect_rc 0 && expect_gone "$id" || return
	for dir in /sys/fs/cgroup/cpu/$NS/$id /sys/fs/cgroup/cpuacct/$NS/$id; do
		[[ ! -d $dir ]] || why "cgroup $dir left after delete" || return
	done
}

# A shim killed under its running module (OOM killer, node trouble): its runner ends with it,
# and containerd runs the shim's `delete`, which removes what the dead shim cannot (mounts,
# cgroups, its socket file).
shim_killed() {
	local id=e2e-shimkill shim runner i socket
	run_ctr run -d --runtime "$RT" "$IMG_TAR" "$id" /go-hello.wasm --sleep 300s
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	shim=$(shim_pids "$id" | head -n 1)
	runner=$(task_pid "$id")
	[[ -n $shim && $shim != "$runner" ]] || why "no shim process of its own for $id (task pid $runner)" || return
	[[ -d /sys/fs/cgroup/cpu/$NS/$id ]] || why "no cgroup before the kill" || return
	kill -KILL "$shim"
	for ((i = 0; i < STOP_WAIT * 5; i++)); do
		[[ -d /proc/$runner ]] || break
		sleep 0.2
	done
	[[ ! -d /proc/$runner ]] || why "runner $runner outlived its shim" || return
	# containerd notices the dead shim and deletes the task itself.
	for ((i = 0; i < STOP_WAIT * 5; i++)); do
		[[ -n $(task_status "$id") ]] || break
		sleep 0.2
	done
	[[ -z $(task_status "$id") ]] || why "task $id still listed as $(task_status "$id") after its shim was killed" || return
	# The dead shim's `delete` also removes the socket file it could not.
	socket=$(shim_socket "$id")
	for ((i = 0; i < STOP_WAIT * 5; i++)); do
		[[ -e $socket ]] || break
		sleep 0.2
	done
	[[ ! -e $socket ]] || why "the killed shim's socket $socket is left" || return
	run_ctr containers rm "$id"
	expect_rc 0 && expect_gone "$id"
}

# `ctr images rm` of every name an image's module came from, then a new shim: its sweep
# removes the compiled module (and its origins record).
cache_swept_with_image() {
	local entry i names
	entry=$(compgen -G "$W/cache/*/$DIGEST.cwasm") || why "no cached $DIGEST.cwasm to sweep" || return
	wait_file "${entry%.cwasm}.origins" "$IMG_TAR" 30 || return
	names=$(cut -f2 "${entry%.cwasm}.origins" | sort -u)
	for i in $names; do
		run_ctr images rm "$i"
		expect_rc 0 || return
	done
	# Any new shim sweeps — one running a module from a plain root filesystem — unless another
	# did within the interval (60 s): the stamp is aged as if that much time had passed.
	touch -d '-2 minutes' "${entry%/*/*}/sweep.stamp" || why "no sweep stamp in ${entry%/*/*}" || return
	run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/trap" e2e-sweeper /trap.wasm
	for ((i = 0; i < 100; i++)); do
		[[ -e $entry ]] || break
		sleep 0.2
	done
	[[ ! -e $entry ]] || why "$entry still there after removing ${names//$'\n'/ } and starting a new shim" || return
	[[ ! -e ${entry%.cwasm}.origins ]] || why "${entry%.cwasm}.origins left behind"
}

# A Go program's expectations of a container's files: /dev/null, /dev/zero, /dev/full,
# /dev/random, /dev/urandom and a writable os.TempDir(); a 16 MiB tmpfs mount holds 15 MiB
# and refuses 17 with "no space"; nothing of it stays on the host after delete.
probe() {
	local id=$1
	shift
	run_ctr run --rm --runtime "$RT" --mount "type=tmpfs,src=tmpfs,dst=/scratch,options=size=16m" "$IMG_PROBE" "$id" /fsprobe.wasm "$@"
}

usual_files() {
	probe e2e-probe
	expect_rc 0 && expect_out "ok /dev/null takes writes and reads empty" && expect_out "ok /dev/full refuses writes with ENOSPC" &&
		expect_out "ok os.TempDir() is writable" && expect_gone e2e-probe
}

tmpfs_fits() {
	probe e2e-fill15 --fill /scratch/f --mib 15
	expect_rc 0 && expect_out "ok fill /scratch/f with 15 MiB" && expect_gone e2e-fill15
}

tmpfs_full() {
	probe e2e-fill17 --fill /scratch/f --mib 17
	expect_rc 1 && expect_out_re 'FAIL fill /scratch/f with 17 MiB: after 1[56] MiB: .*[Nn]o space left on device' &&
		expect_gone e2e-fill17
}

# --read-only: the rootfs refuses writes (EROFS, no trap), /tmp and the tmpfs mount still
# take them.
readonly_rootfs() {
	run_ctr run --rm --runtime "$RT" --read-only "$IMG_PROBE" e2e-ro /fsprobe.wasm --fill /f
	expect_rc 1 && expect_out_re 'FAIL fill /f with 1 MiB: .*[Rr]ead-only file system' && expect_gone e2e-ro || return
	run_ctr run --rm --runtime "$RT" --read-only "$IMG_PROBE" e2e-ro-tmp /fsprobe.wasm
	expect_rc 0 && expect_out "ok os.TempDir() is writable" && expect_gone e2e-ro-tmp
}

# `/m.wasm#run`: the export runs instead of `_start`, its i32 result is the exit status.
export_entry() {
	run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/export" e2e-export '/m.wasm#run'
	expect_rc 7 && expect_gone e2e-export || return
	grep -qF " $TMP/rootfs/export/" /proc/self/mountinfo && why "mounts left under $TMP/rootfs/export"
	run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/export" e2e-export2 '/m.wasm#nope'
	[[ $RC != 0 && $RC != timeout ]] || why "a missing export ran" || return
	expect_err_re 'no function export .nope..*run' && expect_gone e2e-export2
}

# runc_stop SIGNAL STATUS: the pause image under runc itself, stopped by SIGNAL, exits STATUS.
runc_stop() {
	local id=e2e-runc-$1
	run_ctr run -d --runtime "$RUNC" "$PAUSE" "$id"
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	run_ctr task kill -s "$1" "$id"
	expect_rc 0 && wait_status "$id" STOPPED "$STOP_WAIT" || return
	run_ctr task rm "$id"
	expect_rc 0 || return
	# ctr task rm says "exit with non-zero exit code N" unless the task exited 0.
	if (($2 == 0)); then
		[[ $ERR != *"exit code"* ]] || why "did not exit 0 after $1: $ERR" || return
	else
		expect_out "exit code $2" "the exit status" || return
	fi
	run_ctr containers rm "$id"
	expect_rc 0 && expect_gone "$id"
}

# Tasks still running when the harness goes down (a pause under runc, a sleeping module under
# our shim): `down` must stop them; `leftovers` then checks nothing of them is left. (The sweep
# case before removed go-hello's names: imported again.)
left_running() {
	KEEP='e2e-left-runc e2e-left-wasm'
	import_image "$TMP/go-hello-tar.tar" "$IMG_TAR" wasi/wasm || return
	run_ctr run -d --runtime "$RUNC" "$PAUSE" e2e-left-runc
	expect_rc 0 && wait_status e2e-left-runc RUNNING 30 || return
	run_ctr run -d --runtime "$RT" "$IMG_TAR" e2e-left-wasm /go-hello.wasm --sleep 300s
	expect_rc 0 && wait_status e2e-left-wasm RUNNING 30
}

flavour_cases() {
	use_flavour
	check "containerd up" harness_up || return
	check "import the tar-layer image" import_image "$TMP/go-hello-tar.tar" "$IMG_TAR" wasi/wasm
	check "tar-layer image prints the greeting" hello_greets
	check "args after the module path reach the module" hello_args
	check "--env reaches the module" hello_env
	check "--exit 7 is ctr's exit status" hello_exit
	check "piped stdin reaches --stdin" hello_stdin
	check "40 runs, 4 at a time: every create gets its stdio" concurrent_creates
	if [[ $F == 2 ]]; then
		check "import the wasm-layer image (--local)" import_image "$TMP/go-hello-wasm.tar" "$IMG_WASM" wasi/wasm
		check "wasm-layer image prints the greeting" wasm_layer_greets
	else
		skip "wasm-layer image" "containerd 1.6 cannot unpack application/wasm layers"
	fi
	check "rw bind mount: the module's write lands on the host" bind_rw
	check "ro bind mount: the write fails and nothing is written" bind_ro_refuses
	check "ro bind mount: the module sees EROFS (go-hello exits 1), no trap" bind_ro_errno
	check "junk module: create fails naming the problem" rootfs_fails junk e2e-junk \
		'not a WebAssembly module|neither a WebAssembly module|invalid WebAssembly' /bad.wasm
	check "truncated module: create fails naming the problem" rootfs_fails truncated e2e-trunc \
		'invalid WebAssembly|not a WebAssembly module' /bad.wasm
	check "missing entrypoint: create fails saying it does not exist" rootfs_fails empty e2e-nope \
		'/nope\.wasm.*(does not exist|not found|no such)' /nope.wasm
	check "no command at all: create fails saying there is no entrypoint" rootfs_fails empty e2e-nocmd \
		'no entrypoint'
	check "SIGTERM stops a sleeping module (exit 143)" kill_case e2e-term SIGTERM 143 --sleep
	check "SIGKILL stops a spinning module (exit 137)" kill_case e2e-kill SIGKILL 137 --spin log
	check "SIGTERM stops a spinning module (exit 143)" kill_case e2e-term-spin SIGTERM 143 --spin log
	check "a trap exits 134 with a wasm backtrace on stderr" trap_reported
	check "escapes: links and .. out of the rootfs, /proc/self/environ, another rootfs: each read denied" escape_denied
	check "import the fsprobe image" import_image "$TMP/fsprobe.tar" "$IMG_PROBE" wasi/wasm
	check "/dev/null, /dev/zero, /dev/full, /dev/urandom and os.TempDir() work as on Linux" usual_files
	check "a 16 MiB tmpfs mount takes 15 MiB" tmpfs_fits
	check "a 16 MiB tmpfs mount refuses 17 MiB with \"no space\"" tmpfs_full
	check "--read-only: writes to the rootfs fail with EROFS, /tmp still works" readonly_rootfs
	check "entrypoint /m.wasm#run runs the export and exits with its status" export_entry
	check "import the native pause image" import_image "$TMP/pause.tar" "$PAUSE"
	check "native pause runs under runc through the shim, stops on SIGTERM" pause_native
	check "runc itself: pause exits 0 on SIGTERM, nothing left" runc_stop SIGTERM 0
	check "runc itself: SIGKILL is exit 137, nothing left" runc_stop SIGKILL 137
	check "a command's first starts run baseline code; the optimized entry is written in the background" first_start_baseline
	check "a later start does no compilation (\"using cached module\")" second_start_cached
	check "within --memory-limit: the module allocates and exits 0" memory_within_limit
	check "past --memory-limit: exit 137, the reason on stderr, a TaskOOM event" memory_past_limit
	check "the task is its runner process, in the container's cpu/cpuacct cgroups, gone after delete" cgroup_placement
	check "a shim killed under its module leaves no cgroup, mount, socket or state" shim_killed
	check "removing the image's names: the next shim's sweep removes its compiled module" cache_swept_with_image
	check "tasks left running for down: a pause under runc, a sleeping module" left_running
}

# --- main ----------------------------------------------------------------------------------

set_flavours "$@"
started=$SECONDS

prepared=1
check "install prerequisites" install_prerequisites # not fatal: what is missing fails later
if building; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
check "copy examples and SDK" copy_sources || prepared=0
check "fabricks build (tar layer)" build_image "$TMP/src/examples/go-hello" "$IMG_TAR" "$TMP/go-hello-tar.tar" --layer tar || prepared=0
check "fabricks build --layer wasm" build_image "$TMP/src/examples/go-hello" "$IMG_WASM" "$TMP/go-hello-wasm.tar" --layer wasm
check "the tar-layer image holds /go-hello.wasm" extract_module || prepared=0
check "harness pause image" make_pause_image
cp -r "$REPO/test-cluster/programs/fsprobe" "$TMP/src/" && rm -rf "$TMP/src/fsprobe/.fabricks"
check "fabricks build test-cluster/programs/fsprobe" build_image "$TMP/src/fsprobe" "$IMG_PROBE" "$TMP/fsprobe.tar" || prepared=0
((prepared)) || suite_abort "preparation failed, no containerd started"
make_rootfses

for F in "${flavours[@]}"; do
	flavour_cases
	check "down stops what runs" harness_down
	check "leftovers after down: no shim, mount or state" nothing_left
	KEEP='' F=''
done
echo "# e2e: $((SECONDS - started)) s"
suite_end
