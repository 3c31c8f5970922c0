#!/usr/bin/env bash
# Project-local container engines: a dockerd and a podman API service that keep all their state
# under $EMGAPI_DATA_DIR (var/ by default), so they never touch the machine's own engines.
# Each runs in its own session (setsid), with a pid file and a log under $EMGAPI_DATA_DIR/run.
#   engines.sh up [docker|podman|all]     start (idempotent: a running engine is left alone)
#   engines.sh down [docker|podman|all]   stop by PID (TERM, wait, KILL)
#   engines.sh status                     which engine runs, and its DOCKER_HOST
#   engines.sh host [docker|podman]       print the DOCKER_HOST of an engine (unix://…)
# Use an engine with: export DOCKER_HOST=$(scripts/engines.sh host docker)
# The /usr/local/bin/docker CLI (28.x) found first on PATH has no buildx: use /usr/bin/docker
# (Debian's 20.10 CLI) or DOCKER_BUILDKIT=0.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$(dirname "$0")/apt.sh"
cd "$ROOT"

DOCKER_CLI=/usr/bin/docker
ENGINE_HASH=$(printf %s "$EMGAPI_DATA_DIR" | sha256sum | cut -c1-10)
PODMAN_DIR="$EMGAPI_DATA_DIR/podman"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/deployment/podman/containers.conf}"

_apt_install() { apt_install engines "$@"; }

# A unix socket path must fit in sun_path (108 bytes, NUL included). A deep checkout would exceed
# it: then the socket lives in a short /tmp directory named after a hash of the data dir.
_socket() {  # name -> socket path
  local path="$RUN_DIR/$1.sock"
  if [ "${#path}" -gt 100 ]; then
    path="/tmp/emgapi-$ENGINE_HASH/$1.sock"
    mkdir -p "$(dirname "$path")"
    echo "engines: $RUN_DIR/$1.sock is too long for a unix socket; using $path" >&2
  fi
  echo "$path"
}

_pid() { [ -f "$RUN_DIR/$1.pid" ] && cat "$RUN_DIR/$1.pid"; }
_running() { local pid; pid=$(_pid "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

_wait_api() {  # name, socket, seconds: until the Docker-compatible API answers
  local i
  for i in $(seq $(( $3 * 4 ))); do
    if "$DOCKER_CLI" -H "unix://$2" version >/dev/null 2>&1; then return 0; fi
    _running "$1" || { echo "engines: $1 exited; see $RUN_DIR/$1.log" >&2; tail -20 "$RUN_DIR/$1.log" >&2; return 1; }
    sleep 0.25
  done
  echo "engines: $1 did not answer on $2 within $3 s; see $RUN_DIR/$1.log" >&2
  return 1
}

up_docker() {
  [ -x /usr/sbin/dockerd ] && [ -x "$DOCKER_CLI" ] || _apt_install docker.io
  local sock; sock=$(_socket docker)
  if _running dockerd; then
    echo "docker: already running (pid $(_pid dockerd)), DOCKER_HOST=unix://$sock"
    return
  fi
  local exec_root="/tmp/emgapi-docker-exec-$ENGINE_HASH"
  mkdir -p "$EMGAPI_DATA_DIR/docker" "$exec_root"
  rm -f "$sock"
  local started=$SECONDS
  # --exec-root is short and under /tmp: containerd's sockets live there (path length again)
  # run from the run directory: the engine's helpers drop files (e.g. "oom") in their working directory
  (cd "$RUN_DIR" && exec setsid /usr/sbin/dockerd -H "unix://$sock" --data-root "$EMGAPI_DATA_DIR/docker" \
    --exec-root "$exec_root" --pidfile "$RUN_DIR/dockerd.daemon.pid") >"$RUN_DIR/dockerd.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/dockerd.pid"
  _wait_api dockerd "$sock" 60
  echo "docker: running (pid $(_pid dockerd), up in $(( SECONDS - started )) s), DOCKER_HOST=unix://$sock"
}

up_podman() {
  command -v podman >/dev/null && command -v runc >/dev/null || _apt_install podman runc
  [ -x "$DOCKER_CLI" ] || _apt_install docker.io  # the readiness probe speaks the Docker API
  local sock; sock=$(_socket podman)
  if _running podman; then
    echo "podman: already running (pid $(_pid podman)), DOCKER_HOST=unix://$sock"
    return
  fi
  mkdir -p "$PODMAN_DIR/root" "$PODMAN_DIR/runroot" "$PODMAN_DIR/tmp"
  rm -f "$sock"
  local started=$SECONDS
  # project-local storage, run state and libpod tmp dir: the machine's podman is not touched
  (cd "$RUN_DIR" && exec setsid podman --root "$PODMAN_DIR/root" --runroot "$PODMAN_DIR/runroot" \
    --tmpdir "$PODMAN_DIR/tmp" system service --time=0 "unix://$sock") >"$RUN_DIR/podman.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/podman.pid"
  _wait_api podman "$sock" 60
  echo "podman: running (pid $(_pid podman), up in $(( SECONDS - started )) s), DOCKER_HOST=unix://$sock"
}

stop_one() {  # pid-file name, label, seconds to wait after TERM
  if _running "$1"; then
    local pid; pid=$(_pid "$1")
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq $(( $3 * 4 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$2: did not stop within $3 s; killing" >&2
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "$2: stopped"
  else
    echo "$2: not running"
  fi
  rm -f "$RUN_DIR/$1.pid"
}

down_docker() {
  # dockerd stops its containers (10 s grace each, in parallel) and its containerd on TERM
  stop_one dockerd docker 40
  # no stale socket: scripts/env.sh takes an existing socket as a running engine
  rm -f "$RUN_DIR/dockerd.daemon.pid" "$(_socket docker 2>/dev/null)"
}

down_podman() {
  stop_one podman podman 20
  rm -f "$(_socket podman 2>/dev/null)"
  # podman leaves its storage's overlay mounted after the service exits: unmount it (deepest first)
  awk -v dir="$PODMAN_DIR/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
  done
}

status() {
  local name label
  for name in dockerd podman; do
    label=${name%d}; [ "$name" = podman ] && label=podman
    if _running "$name"; then
      echo "$label: running (pid $(_pid "$name")), DOCKER_HOST=unix://$(_socket "$label" 2>/dev/null)"
    else
      echo "$label: stopped"
    fi
  done
}

which=${2:-all}
case "$which" in docker|podman|all) ;; *) echo "unknown engine $which (docker|podman|all)" >&2; exit 2 ;; esac
case "${1:-}" in
  up)
    case "$which" in docker) up_docker ;; podman) up_podman ;; all) up_docker; up_podman ;; esac ;;
  down)
    case "$which" in docker) down_docker ;; podman) down_podman ;; all) down_podman; down_docker ;; esac ;;
  status) status ;;
  host)
    [ "$which" = all ] && which=docker
    echo "unix://$(_socket "$which" 2>/dev/null)" ;;
  *) echo "usage: $0 up|down [docker|podman|all] | status | host [docker|podman]" >&2; exit 2 ;;
esac
