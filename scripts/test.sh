#!/usr/bin/env bash
# The whole test suite: everything on a throwaway PostgreSQL cluster started here (with a real
# Prefect server and worker for the integration tests), then a smoke subset on SQLite.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
# the test settings (pyproject.toml) choose these; the environment must not override them
unset DJANGO_SETTINGS_MODULE EMGAPI_DB__URL EMGAPI_DATA_DIR PREFECT_API_URL EMGAPI_PREFECT__API_URL

# first, before any service starts: a type error fails the run in a minute, not after the suites
# (pyproject.toml's [tool.mypy] says what is checked: the project's code, never var/ or .venv/)
echo "== mypy (task typecheck): 0 errors is the bar"
python -m mypy

# The container and Slurm backends are tested for real: a project-local dockerd with the tools'
# images, and the Slurm dev cluster. Whatever this script starts, it stops at the end.
started=()
cleanup() {
  [ -n "${pg_dir:-}" ] && { pg_stop "$pg_dir"; rm -rf "$pg_dir"; }
  for service in "${started[@]}"; do
    case "$service" in
      docker) scripts/engines.sh down docker >/dev/null ;;
      podman) scripts/engines.sh down podman >/dev/null ;;
      slurm) slurm-dev-environment/slurm.sh down >/dev/null ;;
    esac
  done
}
trap cleanup EXIT
docker_host=$(scripts/engines.sh host docker)
if ! /usr/bin/docker -H "$docker_host" version >/dev/null 2>&1; then
  started+=(docker)
  scripts/engines.sh up docker
fi
export DOCKER_HOST="$docker_host"
EMGAPI_TOOL_PACKAGES='["tools", "workflows.tests.tools"]' scripts/images.sh
scripts/images.sh --app  # the platform's image: the Docker work pool's flow runs get one each
# the GA4GH TES compliance suite (workflows/tests/test_tes_compliance.py): the image `alpine` its
# tasks name (a busybox stand-in, 0.2 s), and its runner's own virtualenv (it pins pydantic 1.9)
scripts/alpine-image.sh "$DOCKER_HOST" >/dev/null
scripts/tes-compliance-venv.sh >/dev/null
if ! slurm-dev-environment/slurm.sh status >/dev/null 2>&1; then
  started+=(slurm)
  slurm-dev-environment/slurm.sh up
fi
eval "$(slurm-dev-environment/slurm.sh env)"

. scripts/pg.sh
pg_dir=$(mktemp -d /tmp/emgapi-test-pg.XXXXXX)
pg_port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# as the platform's own cluster is: a password, scram-sha-256, no trust
pg_password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
(umask 077; echo "$pg_password" >"$pg_dir.pw")
pg_start "$pg_dir" "$pg_port" "$pg_dir.pw"
rm -f "$pg_dir.pw"
export EMGAPI_TEST_PG_DIR="$pg_dir"  # the fault tests restart it

echo "== test suite on PostgreSQL (port $pg_port)"
EMGAPI_DB__URL="postgresql://postgres:$pg_password@127.0.0.1:$pg_port/emgapi" python -m pytest -p no:cacheprovider "$@"

echo "== container backend on Podman's Docker-compatible API (the same code, unchanged)"
podman_host=$(scripts/engines.sh host podman)
if ! /usr/bin/docker -H "$podman_host" version >/dev/null 2>&1; then
  started+=(podman)
  scripts/engines.sh up podman
fi
DOCKER_HOST="$podman_host" EMGAPI_TOOL_PACKAGES='["tools", "workflows.tests.tools"]' scripts/images.sh
DOCKER_HOST="$podman_host" python -m pytest -p no:cacheprovider -q workflows/tests/backends/test_container.py

echo "== smoke subset on SQLite"
python -m pytest -p no:cacheprovider -q -m "not integration and not container and not slurm" \
  calculations/tests/test_api.py calculations/tests/test_states.py workflows/tests/test_execution.py
