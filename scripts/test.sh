#!/usr/bin/env bash
# The whole test suite: everything on a throwaway PostgreSQL cluster started here (with a real
# Prefect server and worker for the integration tests), then a smoke subset on SQLite.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
# the test settings (pyproject.toml) choose these; the environment must not override them
unset DJANGO_SETTINGS_MODULE EMGAPI_DB__URL EMGAPI_DATA_DIR PREFECT_API_URL EMGAPI_PREFECT__API_URL

. scripts/pg.sh
pg_dir=$(mktemp -d /tmp/emgapi-test-pg.XXXXXX)
pg_port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_start "$pg_dir" "$pg_port"
cleanup() { pg_stop "$pg_dir"; rm -rf "$pg_dir"; }
trap cleanup EXIT

echo "== test suite on PostgreSQL (port $pg_port)"
EMGAPI_DB__URL="postgresql://postgres@127.0.0.1:$pg_port/emgapi" python -m pytest -p no:cacheprovider "$@"

echo "== smoke subset on SQLite"
python -m pytest -p no:cacheprovider -q -m "not integration" \
  calculations/tests/test_api.py calculations/tests/test_states.py workflows/tests/test_execution.py
