#!/usr/bin/env bash
# The test suite in tiers, cheapest first, so that a cheap failure ends the run before anything
# costly starts (the tiers are described in conftest.py):
#   checks       ruff (lint, format) and mypy; nothing else has started yet (the images' builds and
#                virtualenvs, beside them, made them 2-3 times slower)
#   unit         the unit tests, one process per core (pytest-xdist), on a throwaway PostgreSQL (the
#                same cluster serves every tier). Meanwhile the container engine builds the images
#                the later tiers need, or finds them built (`background images`, below)
#   sqlite       a smoke run on SQLite, the embedded default
#   integration  the Slurm cluster, a Prefect server and worker: the integration tests, then in the
#                same session the system tier (faults, a real browser, the Docker work pool), skipped
#                once an integration test failed
#   podman       the container backend on Podman's Docker-compatible API, the images copied over
#                from the Docker engine: in the background, beside the integration tier
#   beside       the tests that need no service of the integration tier's: the crates checked by
#                roc-validator, which needs only its virtualenv (marked crate_validator), and the
#                tests starting services of their own (own_services); in the background beside the
#                integration tier, which mostly waits
#   stack        the production-like compose stack (task stack-test: scripts/stack.sh): its images
#                (the app image the suite built, PostgreSQL's and the Slurm node's), up, a prodigal
#                calculation on its Slurm and a flow on its Docker work pool, down; in the background
#                once the app image is built, beside the integration tier, awaited in the last tier
# Usage: scripts/test.sh [--fast | --soak] [pytest arguments, given to every pytest run]
#   (none)   every tier: ./taskw test, and CI
#   --fast   the unit tier alone: ./taskw test-fast
#   --soak   the fault tests at full length (20 kill rounds, a 60 s outage, 10 kills mid-map): ./taskw soak
# Each tier prints its time, and the run ends with all of them. Whatever this script starts, it stops.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
# the test settings (pyproject.toml) choose these; the environment must not override them
unset DJANGO_SETTINGS_MODULE EMGAPI_DB__URL EMGAPI_DATA_DIR PREFECT_API_URL EMGAPI_PREFECT__API_URL

mode=all
case "${1:-}" in --fast) mode=fast; shift ;; --soak) mode=soak; shift ;; esac
# the tools the tests add (workflows/tests/tools: `sleep`, `chatter`) have images too
export EMGAPI_TOOL_PACKAGES='["tools", "workflows.tests.tools"]'

timings=()
tier_started=$SECONDS
tier() {  # name: the previous tier ends, this one starts
  [ -n "${tier_name:-}" ] && timings+=("$(printf '%-12s %4d s' "$tier_name" $(( SECONDS - tier_started )))")
  tier_name=$1 tier_started=$SECONDS
  [ "$1" = end ] || echo "== tier $1"
}

started=()
cleanup() {
  local status=$?
  [ "${tier_name:-end}" = end ] || tier end
  local pid
  for pid in "${bg_pid[@]}"; do  # background work still running: stopped
    kill -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  # the compose stack first: it runs on the engine stopped below
  [[ " ${started[*]} " != *" stack "* ]] || scripts/stack.sh down >/dev/null 2>&1 || true
  rm -f "${bg_log[@]}"
  [ -n "${images_ready:-}" ] && rm -rf "$images_ready"
  [ -n "${pg_dir:-}" ] && { pg_stop "$pg_dir"; rm -rf "$pg_dir"; }
  for service in "${started[@]}"; do
    case "$service" in
      docker) scripts/engines.sh down docker >/dev/null ;;
      podman) scripts/engines.sh down podman >/dev/null ;;
      slurm) slurm-dev-environment/slurm.sh down >/dev/null ;;
    esac
  done
  if [ ${#timings[@]} -gt 0 ]; then
    echo "== time per tier"
    printf '  %s\n' "${timings[@]}"
  fi
  exit $status
}
trap cleanup EXIT

postgres() {  # a throwaway cluster (as the platform's: a password, scram-sha-256), for every tier
  . scripts/pg.sh
  pg_dir=$(mktemp -d /tmp/emgapi-test-pg.XXXXXX)
  local port password
  port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077; echo "$password" >"$pg_dir.pw")
  pg_start "$pg_dir" "$port" "$pg_dir.pw"
  rm -f "$pg_dir.pw"
  export EMGAPI_TEST_PG_DIR="$pg_dir"  # the fault tests restart it
  pg_url="postgresql://postgres:$password@127.0.0.1:$port/emgapi"
}

filtered=$#  # arguments given (-k, a path): a tier may then select no test at all
run_pytest() {  # pytest's exit 5 (no test collected) fails an unfiltered run only
  local status=0
  python -m pytest -p no:cacheprovider "$@" || status=$?
  [ $status -eq 0 ] || { [ $status -eq 5 ] && [ "$filtered" -gt 0 ]; } || exit $status
}
# --reuse-db: the cluster is thrown away, so nothing waits at the end to drop the test databases
on_postgres() { EMGAPI_DB__URL="$pg_url" run_pytest --reuse-db "$@"; }

unit_tier() {
  tier unit
  # the test settings give each process its own data dir, Prefect port and S3 server; PostgreSQL
  # gives each its own test database
  on_postgres -n logical \
    -m "not integration and not container and not slurm and not system and not crate_validator and not own_services" "$@"
}

docker_engine() {
  docker_host=$(scripts/engines.sh host docker)
  if ! /usr/bin/docker -H "$docker_host" version >/dev/null 2>&1; then
    started+=(docker)
    scripts/engines.sh up docker
  fi
  export DOCKER_HOST="$docker_host"
}

# Work in the background, in a session of its own (so that a failure elsewhere stops it all), its
# output kept for when it is awaited:
#   images  what the next tiers need from the engine (scripts/test-images.sh: cold, mostly waiting on
#           package downloads), made while the unit and SQLite tiers run; the app image (the
#           slowest) goes on beside the integration tier, whose one test using it waits for it
#   podman  the container backend's tests (and a Slurm job's container), the same code unchanged, on
#           Podman's Docker-compatible API with the Docker engine's images copied over; it shares
#           nothing with the integration tier but the CPU (its containers mostly wait), so it runs beside it
#   beside  the crate_validator and own_services tests, in a database of their own on the same cluster,
#           beside the integration tier too (which then mostly waits on its services and tools)
#   slurm   the dev cluster's start, unless it runs already, while the unit and SQLite tiers run
declare -A bg_pid=() bg_log=() bg_started=()
background() {  # name command…
  local name=$1; shift
  bg_log[$name]=$(mktemp "/tmp/emgapi-test-$name.XXXXXX")
  bg_started[$name]=$SECONDS
  setsid "$@" >"${bg_log[$name]}" 2>&1 &
  bg_pid[$name]=$!
}
await_background() {  # name: its output, then its exit status (pytest's 5, no test selected, is fine when filtered)
  local name=$1 status=0
  wait "${bg_pid[$name]}" || status=$?
  unset "bg_pid[$name]"
  cat "${bg_log[$name]}"
  echo "$name: done $(( SECONDS - bg_started[$name] )) s after it was started"
  [ $status -eq 0 ] || { [ $status -eq 5 ] && [ "$filtered" -gt 0 ]; } || { echo "$name: failed ($status)" >&2; exit $status; }
}
await_part() {  # name file: until the job has made a part of its work (it writes the file, with that
  # part's exit status) or ended; a part that failed fails the run, with the job's output
  local name=$1 file=$2
  while [ ! -f "$file" ] && kill -0 "${bg_pid[$name]}" 2>/dev/null; do sleep 0.5; done
  if [ "$(cat "$file" 2>/dev/null)" != 0 ]; then
    await_background "$name"
    echo "$name: failed ($(basename "$file") not made)" >&2; exit 1
  fi
  echo "$name: $(basename "$file") made $(( SECONDS - bg_started[$name] )) s after it was started"
}
podman_engine() {
  podman_host=$(scripts/engines.sh host podman)
  if ! /usr/bin/docker -H "$podman_host" version >/dev/null 2>&1; then
    started+=(podman)
    scripts/engines.sh up podman
  fi
}

slurm_cluster_start() {  # in the background: its daemons mostly wait for each other (~8 s)
  if ! slurm-dev-environment/slurm.sh status >/dev/null 2>&1; then
    started+=(slurm)
    background slurm slurm-dev-environment/slurm.sh up
  fi
}
slurm_cluster() {
  [ -z "${bg_pid[slurm]:-}" ] || await_background slurm
  eval "$(slurm-dev-environment/slurm.sh env)"
}

case "$mode" in
  fast)
    postgres
    unit_tier "$@"
    exit 0 ;;
  soak)
    tier soak
    postgres
    EMGAPI_TEST_SOAK=1 on_postgres -rA workflows/tests/test_faults.py "$@"
    exit 0 ;;
esac

tier checks
ruff check .
ruff format --check .
echo "mypy (task typecheck): 0 errors is the bar"
python -m mypy  # pyproject.toml's [tool.mypy] says what is checked

docker_engine
# the app image (the slowest) is awaited by the one test that needs it, the Docker work pool's, at
# the end of the integration session; the rest when that tier starts
images_ready=$(mktemp -d /tmp/emgapi-test-images.XXXXXX)
background images env IMAGES_READY_DIR="$images_ready" scripts/test-images.sh
postgres
slurm_cluster_start
unit_tier "$@"

tier sqlite  # the embedded default: a smoke run, a test or two of each layer that writes
sqlite_smoke=(
  calculations/tests/test_api.py::test_upload_then_read_back  # blobs and files
  calculations/tests/test_api.py::test_others_files_and_calculations_are_404  # queries by owner
  calculations/tests/test_api.py::test_identical_submission_after_completion_is_answered_from_the_cache
  calculations/tests/test_idempotency.py::test_a_retried_submission_returns_the_first_answer_and_runs_once
  calculations/tests/test_states.py::test_a_stale_attempt_cannot_change_state  # the guarded update
  calculations/tests/test_workflow_runs.py::test_a_valid_pipeline_is_queued_and_shown
  workflows/tests/execution/test_calculation_runs.py::test_prodigal_outputs_match_a_direct_run  # a real tool, run in-process
  workflows/tests/execution/test_calculation_runs.py::test_a_platform_fault_is_retried_then_final_and_says_why
)
run_pytest -q -m "not container and not slurm" "${sqlite_smoke[@]}" "$@"

tier integration
await_part images "$images_ready/tools"
slurm_cluster
podman_engine
background podman env DOCKER_HOST="$podman_host" bash -c '
  scripts/images.sh --from "$0" && python -m pytest -p no:cacheprovider -q -m container \
    workflows/tests/backends/test_container.py workflows/tests/backends/test_slurm.py "$@"
' "$DOCKER_HOST" "$@"
background beside env EMGAPI_DB__URL="${pg_url}_beside" python -m pytest -p no:cacheprovider --reuse-db -q \
  -m "crate_validator or own_services" "$@"
if [ "$filtered" -eq 0 ]; then  # (a filtered run selects tests; the stack is none of them)
  # its own project and ports on the suite's engine; stopped at the end whatever happens (cleanup)
  export STACK_PROJECT="emgapi-test-$$" STACK_DOCKER_HOST="$DOCKER_HOST" STACK_TIMEOUT=300
  STACK_WEB_PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  STACK_PREFECT_PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export STACK_WEB_PORT STACK_PREFECT_PORT
  started+=(stack)
  background stack bash -c 'while [ ! -f "$0/app" ]; do sleep 1; done; [ "$(cat "$0/app")" = 0 ] && scripts/stack.sh test' \
    "$images_ready"
fi
# its Prefect server boots while the tests are collected (workflows/tests/services.py)
EMGAPI_TEST_PREFECT_EARLY=1 EMGAPI_TEST_APP_IMAGE_READY="$images_ready/app" on_postgres --tier-fail-fast \
  -m "(integration or container or slurm or system) and not crate_validator and not own_services" "$@"

tier podman  # and the rest beside it, and the app image: whatever of the background work still runs
await_background images
await_background beside
await_background podman
if [ -n "${bg_pid[stack]:-}" ]; then
  tier stack  # what the stack's test adds beyond the tiers it ran beside
  await_background stack
fi

