#!/usr/bin/env bash
# The containerised, production-like stack (docker-compose.yaml) on the project-local Docker engine.
#   stack.sh up                      build every image, start the stack, wait until the API is healthy
#   stack.sh test [--no-up]          up, then one prodigal calculation through the HTTP API, and one
#                                    flow on the Docker work pool (docker-worker); prints timings
#                                    (--no-up: against the stack already running)
#   stack.sh logs [service…]         the services' logs (last STACK_LOG_LINES lines, default 200)
#   stack.sh ps                      the stack's containers
#   stack.sh down [--keep-volumes]   stop and remove the containers (and the volumes, unless asked)
# Environment:
#   BASE_IMAGE          base of every image (default: emgapi/base:bookworm, built by scripts/base-image.sh
#                       because no registry is reachable here; debian:bookworm-slim where one is)
#   STACK_ENGINE        docker (default) or podman: the project-local engine of scripts/engines.sh
#   STACK_DOCKER_HOST   use this engine instead (unix:///… or tcp://…); nothing is started then
#   STACK_WEB_PORT      published API port (default 8080); STACK_PREFECT_PORT Prefect UI (default 4300)
#   STACK_BIND          address the ports are published on (default 127.0.0.1)
#   STACK_BACKEND       test only: the backend the test calculation names (local|slurm); unset, the
#                       stack's EMGAPI_EXECUTION__DEFAULT decides (deployment/stack.env)
#   STACK_TIMEOUT       seconds to wait for the API, and for the test calculation (default 600)
# Secrets: STACK_DB_PASSWORD, STACK_S3_ACCESS_KEY, STACK_S3_SECRET_KEY, STACK_SECRET_KEY and
# STACK_PREFECT_PASSWORD come from the environment, or are generated on first start into
# var/secrets/stack-* (0600; scripts/secrets.sh). docker-compose.yaml has no defaults for them.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$(dirname "$0")/apt.sh"
cd "$ROOT"

PROJECT=${STACK_PROJECT:-emgapi}
export STACK_PROJECT=$PROJECT  # docker-compose.yaml names the project's network and volume after it
TIMEOUT=${STACK_TIMEOUT:-600}
export STACK_WEB_PORT=${STACK_WEB_PORT:-8080} STACK_PREFECT_PORT=${STACK_PREFECT_PORT:-4300}
export STACK_BIND=${STACK_BIND:-127.0.0.1}
export STACK_PUBLIC_URL=${STACK_PUBLIC_URL:-http://127.0.0.1:$STACK_WEB_PORT}
export STACK_PREFECT_PUBLIC_URL=${STACK_PREFECT_PUBLIC_URL:-http://127.0.0.1:$STACK_PREFECT_PORT}
# docker-compose v1 builds through the engine's API (no BuildKit: the 28.x CLI on PATH lacks buildx)
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0
API="http://127.0.0.1:$STACK_WEB_PORT/api/v2"
export STACK_DB_PASSWORD=${STACK_DB_PASSWORD:-$(secret stack-db-password)}
export STACK_S3_ACCESS_KEY=${STACK_S3_ACCESS_KEY:-$(secret stack-s3-access-key)}
export STACK_S3_SECRET_KEY=${STACK_S3_SECRET_KEY:-$(secret stack-s3-secret-key)}
export STACK_SECRET_KEY=${STACK_SECRET_KEY:-$(secret stack-django-secret-key)}
export STACK_PREFECT_PASSWORD=${STACK_PREFECT_PASSWORD:-$(secret stack-prefect-password)}

log() { echo "stack: $*" >&2; }
# the stack's Prefect server requires its credentials on every call (PREFECT_SERVER_API_AUTH_STRING);
# curl reads them from a config on stdin, never from its argv (which `ps` shows)
prefect_api() { printf 'user = "emgapi:%s"\n' "$STACK_PREFECT_PASSWORD" | curl -sf -K - "$@"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

ensure_tools() {
  local missing=()
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  [ ${#missing[@]} -eq 0 ] && return
  apt_install stack "${missing[@]}"
}

ensure_engine() {
  if [ -n "${STACK_DOCKER_HOST:-}" ]; then
    export DOCKER_HOST=$STACK_DOCKER_HOST
  else
    local engine=${STACK_ENGINE:-docker}
    scripts/engines.sh up "$engine" >&2
    DOCKER_HOST=$(scripts/engines.sh host "$engine")
    export DOCKER_HOST
  fi
}

compose() {
  # the docker-worker service drives the engine the stack runs on, through its socket
  case "${DOCKER_HOST:-}" in unix://*) export STACK_DOCKER_SOCKET=${DOCKER_HOST#unix://} ;; esac
  docker-compose -p "$PROJECT" -f docker-compose.yaml "$@"
}

ensure_base_image() {
  if [ -z "${BASE_IMAGE:-}" ]; then
    export BASE_IMAGE=emgapi/base:bookworm
    scripts/base-image.sh "$DOCKER_HOST" >/dev/null
  fi
  log "base image: $BASE_IMAGE"
}

wait_api() {
  local started; started=$(now)
  local deadline=$(( SECONDS + TIMEOUT ))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -sf -o /dev/null "$API/health"; then
      log "API healthy at $API/health after $(since "$started") s"
      return 0
    fi
    sleep 1
  done
  log "the API did not become healthy within $TIMEOUT s"
  curl -s "$API/health" >&2 || true
  compose ps >&2
  compose logs --tail=40 >&2
  return 1
}

# The API is healthy before the worker has registered the flows: a calculation submitted then waits
# for the reconciler. So `up` also waits until the run-calculation deployment exists and a worker
# heartbeats in the work pool.
wait_worker() {
  local started; started=$(now)
  local prefect="http://127.0.0.1:$STACK_PREFECT_PORT/api"
  local pool; pool=$(sed -n 's/^EMGAPI_PREFECT__WORK_POOL=//p' deployment/stack.env)
  local deployment; deployment=$(sed -n 's/^EMGAPI_PREFECT__DEPLOYMENT=//p' deployment/stack.env)
  local deadline=$(( SECONDS + TIMEOUT ))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if prefect_api -o /dev/null "$prefect/deployments/name/${deployment:-run-calculation/run-calculation}" \
      && prefect_api -X POST -H 'Content-Type: application/json' -d '{}' \
           "$prefect/work_pools/${pool:-calculations}/workers/filter" | grep -q '"status": *"ONLINE"'; then
      log "worker serving work pool ${pool:-calculations} after $(since "$started") s"
      return 0
    fi
    sleep 1
  done
  log "no worker served the work pool within $TIMEOUT s"
  compose logs --tail=60 worker >&2
  return 1
}

cmd_up() {
  ensure_tools
  ensure_engine
  ensure_base_image
  local t0 t1 t2
  t0=$(now)
  log "building images (cold ~2 min on 2 cores; cached afterwards)"
  compose build >"$RUN_DIR/stack-build.log" 2>&1 || { tail -40 "$RUN_DIR/stack-build.log" >&2; log "build failed; see $RUN_DIR/stack-build.log"; exit 1; }
  BUILD_SECONDS=$(since "$t0")
  log "images built in $BUILD_SECONDS s (log: $RUN_DIR/stack-build.log)"
  t1=$(now)
  # compose waits for each dependency's healthcheck (depends_on: condition: service_healthy)
  compose up -d --remove-orphans || { compose ps >&2; compose logs --tail=60 >&2; exit 1; }
  wait_api
  wait_worker
  UP_SECONDS=$(since "$t1")
  cat >&2 <<MSG
stack: up in $UP_SECONDS s (DOCKER_HOST=$DOCKER_HOST, project $PROJECT)
  API docs     $STACK_PUBLIC_URL/api/v2/docs
  Prefect UI   $STACK_PREFECT_PUBLIC_URL
  token        docker-compose -p $PROJECT exec -T api python manage.py create_token <user>
  logs         scripts/stack.sh logs [service]      stop: scripts/stack.sh down
MSG
}

cmd_test() {
  local t_total t token file_id calc_id calc state body backend_field=""
  t_total=$(now)
  if [ "${1:-}" = --no-up ]; then
    ensure_tools; ensure_engine
    BUILD_SECONDS="-" UP_SECONDS="-"
    wait_api
    wait_worker
  else
    cmd_up
  fi
  t=$(now)
  token=$(compose exec -T api python manage.py create_token stack-test | tail -1 | tr -d '\r')
  local token_seconds; token_seconds=$(since "$t")
  auth=(-H "Authorization: Bearer $token")

  t=$(now)
  file_id=$(curl -sf "${auth[@]}" -F file=@demo/data/genome.fna "$API/files" | json "d['id']")
  local upload_seconds; upload_seconds=$(since "$t")
  log "uploaded demo/data/genome.fna: file $file_id"

  [ -n "${STACK_BACKEND:-}" ] && backend_field=", \"backend\": \"$STACK_BACKEND\""
  body="{\"inputs\": {\"contigs\": \"$file_id\"}, \"params\": {\"mode\": \"meta\"}, \"use_cache\": false$backend_field}"
  t=$(now)
  calc=$(curl -s -w '\n%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' -d "$body" \
    "$API/tools/prodigal/calculations")
  local code=${calc##*$'\n'}
  calc=${calc%$'\n'*}
  if [ "$code" != 202 ] && [ "$code" != 200 ]; then
    log "submission failed: HTTP $code: $calc"
    exit 1
  fi
  calc_id=$(json "d['id']" <<<"$calc")
  log "submitted prodigal calculation $calc_id (backend ${STACK_BACKEND:-default}): $(json "d['state']" <<<"$calc")"

  calc=$(until_complete "$API/calculations/$calc_id" "calculation $calc_id" "$t" worker)
  local calc_seconds; calc_seconds=$(since "$t")
  local proteins genes
  proteins=$(json "d['outputs']['proteins'][0]" <<<"$calc")
  genes=$(curl -sf "${auth[@]}" "$API/files/$proteins/content" | grep -c '^>' || true)
  docker_pool_test "$file_id"
  cat <<MSG
stack test: PASSED — prodigal calculation $calc_id COMPLETE on backend $(json "d['backend']" <<<"$calc"), $genes proteins;
  annotate-genomes on the Docker work pool COMPLETE (flow run $DOCKER_FLOW_RUN, its steps on the worker)
  images built        ${BUILD_SECONDS} s
  stack up (healthy)  ${UP_SECONDS} s
  token               ${token_seconds} s
  upload              ${upload_seconds} s
  submit -> COMPLETE  ${calc_seconds} s   (started $(json "d['started_at']" <<<"$calc"), finished $(json "d['finished_at']" <<<"$calc"))
  Docker work pool    ${DOCKER_SECONDS} s   (deploy, then launch -> COMPLETE in a container of the app image)
  total               $(since "$t_total") s
MSG
}

# until_complete URL WHAT STARTED SERVICE…: poll the run at URL (a calculation or a workflow run)
# until it is final, saying each state it reaches; print it if COMPLETE, else exit 1 with its error
# and the services' last log lines.
until_complete() {
  local url=$1 what=$2 started=$3 run state last="" deadline=$(( SECONDS + TIMEOUT ))
  shift 3
  while :; do
    run=$(curl -sf "${auth[@]}" "$url")
    state=$(json "d['state']" <<<"$run")
    [ "$state" != "$last" ] && log "  $state after $(since "$started") s"
    last=$state
    case "$state" in COMPLETE|EXECUTOR_ERROR|SYSTEM_ERROR|CANCELED) break ;; esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$what still $state after $TIMEOUT s"
      compose logs --tail=60 "$@" >&2
      exit 1
    fi
    sleep 0.25
  done
  if [ "$state" != COMPLETE ]; then
    log "$what ended $state: $(json "d['error']" <<<"$run")"
    compose logs --tail=80 "$@" >&2
    exit 1
  fi
  echo "$run"
}

# The docker-worker service: a flow deployed to the Docker work pool runs in a container of the app
# image on the stack's network, and its steps on the calculation worker.
docker_pool_test() {  # genome file id
  local t run run_id profile_id body
  t=$(now)
  compose exec -T worker python -m workflows.deploy annotate_genomes --pool docker >&2
  profile_id=$(curl -sf "${auth[@]}" -F file=@demo/data/family.hmm "$API/files" | json "d['id']")
  body="{\"params\": {\"genomes\": [\"$1\"], \"profile\": \"$profile_id\"}}"
  run=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' -d "$body" "$API/workflows/annotate-genomes/runs")
  run_id=$(json "d['id']" <<<"$run")
  log "launched annotate-genomes on the Docker work pool: workflow run $run_id"
  run=$(until_complete "$API/workflow-runs/$run_id" "workflow run $run_id" "$t" docker-worker worker)
  DOCKER_FLOW_RUN=$(json "d['flow_run_id']" <<<"$run")
  DOCKER_SECONDS=$(since "$t")
}

cmd_down() {
  ensure_tools
  if [ -n "${STACK_DOCKER_HOST:-}" ]; then
    export DOCKER_HOST=$STACK_DOCKER_HOST
  else
    DOCKER_HOST=$(scripts/engines.sh host "${STACK_ENGINE:-docker}")
    export DOCKER_HOST
    local status; status=$(scripts/engines.sh status)
    if ! grep -q "^${STACK_ENGINE:-docker}: running" <<<"$status"; then
      log "the ${STACK_ENGINE:-docker} engine is not running: nothing to stop"
      return 0
    fi
  fi
  local volumes=(-v)
  [ "${1:-}" = --keep-volumes ] && volumes=()
  compose down "${volumes[@]}" --remove-orphans
  log "stack down${volumes:+ (volumes removed)}; the engine still runs: scripts/engines.sh down ${STACK_ENGINE:-docker}"
}

case "${1:-}" in
  up) cmd_up ;;
  test) shift; cmd_test "$@" ;;
  down) shift; cmd_down "$@" ;;
  logs) shift; ensure_tools; ensure_engine; compose logs --tail="${STACK_LOG_LINES:-200}" "$@" ;;
  ps) ensure_tools; ensure_engine; compose ps ;;
  *) echo "usage: $0 up | test | logs [service…] | ps | down [--keep-volumes]" >&2; exit 2 ;;
esac
