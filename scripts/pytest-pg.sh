#!/usr/bin/env bash
# Run pytest with the given arguments on a throwaway PostgreSQL cluster, as the integration tier
# does, using the container engine and Slurm cluster if they already run (task engines-up,
# task slurm-up); nothing else. For a developer's targeted run: scripts/pytest-pg.sh -k tes workflows/tests
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
unset DJANGO_SETTINGS_MODULE EMGAPI_DB__URL EMGAPI_DATA_DIR PREFECT_API_URL EMGAPI_PREFECT__API_URL
docker_host=$(scripts/engines.sh host docker)
export DOCKER_HOST="${DOCKER_HOST:-$docker_host}"
if slurm-dev-environment/slurm.sh status >/dev/null 2>&1; then
  eval "$(slurm-dev-environment/slurm.sh env)"
fi
. scripts/pg.sh
pg_dir=$(mktemp -d /tmp/emgapi-test-pg.XXXXXX)
trap 'pg_stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
pg_port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
(umask 077; echo "$pg_password" >"$pg_dir.pw")
pg_start "$pg_dir" "$pg_port" "$pg_dir.pw"
rm -f "$pg_dir.pw"
export EMGAPI_TEST_PG_DIR="$pg_dir"
EMGAPI_DB__URL="postgresql://postgres:$pg_password@127.0.0.1:$pg_port/emgapi" python -m pytest -p no:cacheprovider "$@"
