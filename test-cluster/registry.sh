#!/usr/bin/env bash
# A private Debian `docker-registry` on 127.0.0.1 for the registry tests.
#   registry.sh up [--auth]     start it (port ${FABRICKS_REGISTRY_PORT:-5000}; --auth: that + 1, with an htpasswd user)
#   registry.sh down [--auth]   stop exactly the process `up` started
#   registry.sh status [--auth] print its address if running (exit 1 if not)
# Everything lives under ${FABRICKS_HARNESS_DIR:-/tmp/fabricks-harness}/registry[-auth]:
# config.yml, data/, registry.log, registry.pid and (with --auth) htpasswd and docker/config.json,
# a docker config holding the user's credentials (use it with DOCKER_CONFIG=<dir>/docker).
set -euo pipefail

readonly AUTH_USER=fabricks AUTH_PASSWORD=fabricks-secret
BASE=$(realpath -m "${FABRICKS_HARNESS_DIR:-/tmp/fabricks-harness}")

usage() {
	sed -n '2,8p' "$0" >&2
	exit 2
}
die() {
	echo "registry: $*" >&2
	exit 1
}

PORT=${FABRICKS_REGISTRY_PORT:-5000}
[[ $PORT =~ ^[0-9]+$ ]] || die "FABRICKS_REGISTRY_PORT must be a port number"
cmd=${1:-}
[[ -n $cmd ]] || usage
shift
AUTH=false
for arg in "$@"; do
	case $arg in
	--auth) AUTH=true ;;
	*) usage ;;
	esac
done
if $AUTH; then
	DIR=$BASE/registry-auth PORT=$((PORT + 1))
else
	DIR=$BASE/registry
fi
ADDR=127.0.0.1:$PORT
PIDFILE=$DIR/registry.pid

# The pid in the pid file, if it still is our docker-registry with our config.
our_pid() {
	local pid
	[[ -f $PIDFILE ]] || return 1
	pid=$(<"$PIDFILE")
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "docker-registry serve $DIR/config.yml" || return 1
	echo "$pid"
}

install() {
	command -v docker-registry >/dev/null && { ! $AUTH || command -v htpasswd >/dev/null; } && return
	echo "registry: installing docker-registry apache2-utils (apt)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry apache2-utils >/dev/null
}

up() {
	if pid=$(our_pid); then
		echo "registry: already running at $ADDR (pid $pid)" >&2
		return
	fi
	install
	mkdir -p "$DIR/data"
	local auth=""
	if $AUTH; then
		htpasswd -B -b -c "$DIR/htpasswd" "$AUTH_USER" "$AUTH_PASSWORD" 2>/dev/null
		auth="auth:
  htpasswd:
    realm: fabricks-test
    path: $DIR/htpasswd"
		mkdir -p "$DIR/docker"
		printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$ADDR" \
			"$(printf '%s:%s' "$AUTH_USER" "$AUTH_PASSWORD" | base64 -w0)" >"$DIR/docker/config.json"
	fi
	cat >"$DIR/config.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDR
$auth
YML
	# setsid: its own session, so nothing of the caller's signals or job control reaches it.
	setsid docker-registry serve "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 50); do
		if curl -s -o /dev/null "http://$ADDR/v2/"; then
			echo "registry: up at $ADDR (pid $(<"$PIDFILE"), log $DIR/registry.log)" >&2
			return
		fi
		# Alive is enough here: right after the launch the pid may still be the shell's fork,
		# before its exec, whose command line our_pid would not recognise (a busy CI machine).
		kill -0 "$(<"$PIDFILE")" 2>/dev/null || { tail -n 20 "$DIR/registry.log" >&2; die "docker-registry exited"; }
		sleep 0.1
	done
	tail -n 20 "$DIR/registry.log" >&2
	down
	die "docker-registry did not answer on $ADDR"
}

down() {
	local pid
	if pid=$(our_pid); then
		kill -TERM "$pid"
		for _ in $(seq 50); do
			[[ -d /proc/$pid ]] || break
			sleep 0.1
		done
		[[ -d /proc/$pid ]] && kill -KILL "$pid"
		echo "registry: stopped $ADDR (pid $pid)" >&2
	fi
	rm -f "$PIDFILE"
}

case $cmd in
up) up ;;
down) down ;;
status) pid=$(our_pid) && echo "$ADDR pid $pid" ;;
*) usage ;;
esac
