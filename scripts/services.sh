#!/usr/bin/env bash
# Start and stop the platform's processes: Prefect server, calculation worker, API (gunicorn).
# Each runs in its own session (setsid) with a pid file under $EMGAPI_DATA_DIR/run; logs beside it.
#   services.sh start [prefect|worker|web|all]   services.sh stop [all]   services.sh status
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$(dirname "$0")/pg.sh"
cd "$ROOT"
PREFECT_DB_DIR="$EMGAPI_DATA_DIR/prefect-db"
PREFECT_DB_PORT="${PREFECT_DB_PORT:-5433}"
PREFECT_DB_CONFIGURED="${PREFECT_SERVER_DATABASE_CONNECTION_URL:-}"

_running() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

_spawn() {  # name, command...
  local name=$1; shift
  if _running "$name"; then echo "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return; fi
  setsid "$@" >"$RUN_DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

_wait_http() {  # name, url, seconds
  for _ in $(seq $(( $3 * 4 ))); do
    if curl -sf -o /dev/null "$2"; then return 0; fi
    _running "$1" || { echo "$1 exited; see $RUN_DIR/$1.log" >&2; tail -20 "$RUN_DIR/$1.log" >&2; return 1; }
    sleep 0.25
  done
  echo "$1 did not answer at $2 within $3 s; see $RUN_DIR/$1.log" >&2; return 1
}

start_prefect() {
  # A SQLite-backed Prefect server creates a flow run in ~0.27 s and serialises under load
  # (20 at once: 13 s); on PostgreSQL it is ~25 ms (20 at once: 1 s). So the embedded default
  # runs Prefect on a project-local PostgreSQL cluster, unless a database URL is configured.
  # Its superuser has a generated password (scram-sha-256, also on the private socket): no local
  # account reaches the database without it.
  if [ -z "$PREFECT_DB_CONFIGURED" ]; then
    local pwfile; pwfile=$(secret_file prefect-db-password)
    pg_start "$PREFECT_DB_DIR" "$PREFECT_DB_PORT" "$pwfile"
    PGPASSWORD="$(cat "$pwfile")"; export PGPASSWORD
    pg_create_db "$PREFECT_DB_DIR" "$PREFECT_DB_PORT" prefect
    unset PGPASSWORD
    export PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://postgres:$(cat "$pwfile")@127.0.0.1:$PREFECT_DB_PORT/prefect"
  fi
  _spawn prefect prefect server start
  _wait_http prefect "$PREFECT_API_URL/health" 90
  echo "prefect server: http://127.0.0.1:$PREFECT_PORT"
}

start_worker() {
  python manage.py migrate --noinput -v0
  python -m workflows.deploy all
  _spawn worker python -m workflows.worker
  echo "calculation worker started (log: $RUN_DIR/worker.log)"
}

start_web() {
  python manage.py migrate --noinput -v0
  python manage.py collectstatic --noinput -v0
  # the admin's superuser, made on the first start only (its password in $EMGAPI_DATA_DIR/admin-password)
  local admin; admin=$(python manage.py ensure_admin)
  # workers, threads and timeout: emgapiv2/gunicorn_conf.py (WEB_WORKERS, WEB_THREADS, WEB_TIMEOUT)
  _spawn web gunicorn -c python:emgapiv2.gunicorn_conf emgapiv2.wsgi --bind "$WEB_HOST:$WEB_PORT" --access-logfile -
  _wait_http web "$EMGAPI_PUBLIC_URL/api/v2/docs" 30
  echo "API: $EMGAPI_PUBLIC_URL/api/v2/docs"
  echo "Django admin: $admin"
}

stop_one() {
  local name=$1
  if _running "$name"; then
    local pid; pid=$(cat "$RUN_DIR/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped $name"
  fi
  rm -f "$RUN_DIR/$name.pid"
}

case "${1:-}" in
  start)
    case "${2:-all}" in
      prefect) start_prefect ;; worker) start_worker ;; web) start_web ;;
      all) start_prefect; start_worker; start_web ;;
      *) echo "unknown service $2" >&2; exit 2 ;;
    esac ;;
  stop)
    if [ "${2:-all}" = all ]; then for s in web worker prefect; do stop_one "$s"; done; else stop_one "$2"; fi
    if [ "${2:-all}" = all ] || [ "$2" = prefect ]; then pg_stop "$PREFECT_DB_DIR"; fi ;;
  status)
    # by command line and working directory, not only by pid file: a worker started by hand
    # (`task worker`, or again after a crash) is found too
    declare -A pattern=([prefect]="prefect server start" [worker]="-m workflows.worker" [web]="gunicorn .*emgapiv2.wsgi")
    for s in prefect worker web; do
      pids=()
      for pid in $(pgrep -f -- "${pattern[$s]}" || true); do
        [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$ROOT" ] && pids+=("$pid")
      done
      if [ ${#pids[@]} -gt 0 ]; then
        note=""; _running "$s" || note=" (started outside task start)"
        echo "$s: running (pid ${pids[*]})$note"
      else
        echo "$s: stopped"
      fi
    done ;;
  *) echo "usage: $0 start|stop [prefect|worker|web|all] | status" >&2; exit 2 ;;
esac
