# Sourced by every script: the environment each process of the platform needs.
# Values already set in the environment win, then those in .env, then the defaults below.
# go-task runs inline commands in its own shell, where BASH_SOURCE is empty: the Taskfile passes
# EMGAPI_ROOT; scripts run by bash find the root from this file's path.
ROOT="${EMGAPI_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# .env is read as data, the way the Python side (python-dotenv) reads it, not run as shell: a JSON
# value such as EMGAPI_EXECUTION__ENABLED=["local","slurm"] keeps its quotes, and one pair of
# quotes around a whole value is removed. The environment wins over .env, as in pydantic-settings.
_load_dotenv() {
  local line key value
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    case "$line" in '' | '#'*) continue ;; esac
    key=${line%%=*}; value=${line#*=}
    key=${key#export }; key=${key//[[:space:]]/}
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    if [[ ${#value} -ge 2 && ( "$value" == \"*\" || "$value" == \'*\' ) ]]; then value=${value:1:${#value}-2}; fi
    [ -n "${!key+set}" ] || export "$key=$value"
  done <"$1"
}
if [ -f "$ROOT/.env" ]; then _load_dotenv "$ROOT/.env"; fi
export EMGAPI_DATA_DIR="${EMGAPI_DATA_DIR:-$ROOT/var}"
# the data directory (database, blobs, work directories, secrets) is its owner's alone: no read or
# write for anyone else. The group's x is kept: with an ACL (scripts/pg.sh lets the postgres account
# traverse it) those bits are the ACL's mask, and clearing them would lock PostgreSQL out.
mkdir -p -m 700 "$EMGAPI_DATA_DIR" && chmod u=rwx,g-rw,o= "$EMGAPI_DATA_DIR"
. "$ROOT/scripts/secrets.sh"
# The Prefect server's credentials (Django makes its own key, emgapiv2/keys.py): generated on first
# start, in files no one else can read. The Prefect UI asks for the same user:password (README).
if [ -z "${PREFECT_SERVER_API_AUTH_STRING:-}" ]; then
  _prefect_password=$(secret prefect-api-password) || return 1 2>/dev/null || exit 1  # never an empty password
  export PREFECT_SERVER_API_AUTH_STRING="emgapi:$_prefect_password"; unset _prefect_password
fi
export PREFECT_API_AUTH_STRING="${PREFECT_API_AUTH_STRING:-$PREFECT_SERVER_API_AUTH_STRING}"
export WEB_HOST="${WEB_HOST:-127.0.0.1}" WEB_PORT="${WEB_PORT:-8000}"
export PREFECT_PORT="${PREFECT_PORT:-4200}"
export EMGAPI_PUBLIC_URL="${EMGAPI_PUBLIC_URL:-http://$WEB_HOST:$WEB_PORT}"
export PREFECT_HOME="${PREFECT_HOME:-$EMGAPI_DATA_DIR/prefect}"
export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:$PREFECT_PORT/api}"
export EMGAPI_PREFECT__API_URL="$PREFECT_API_URL"
export PREFECT_SERVER_API_HOST="${PREFECT_SERVER_API_HOST:-127.0.0.1}" PREFECT_SERVER_API_PORT="$PREFECT_PORT"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_LOGGING_TO_API_BATCH_INTERVAL="${PREFECT_LOGGING_TO_API_BATCH_INTERVAL:-1}"
# The Prefect server records task runs (a workflow's steps) and events in batches, flushed every
# second: one insert per event (Prefect's default) was half the server's CPU in a map (bench/README.md)
for _setting in TASK_RUN_RECORDER EVENT_PERSISTER; do
  for _pair in BATCH_SIZE=200 READ_BATCH_SIZE=100 FLUSH_INTERVAL=1; do
    _name="PREFECT_SERVER_SERVICES_${_setting}_${_pair%%=*}"
    [ -n "${!_name:-}" ] || export "$_name=${_pair#*=}"
  done
done
unset _setting _pair _name
export DJANGO_SETTINGS_MODULE=emgapiv2.settings
# The project-local container engine and Slurm dev cluster (task engines-up / task slurm-up), unless
# the environment points at others (a system Docker, a real cluster's slurm.conf).
if [ -z "${DOCKER_HOST:-}" ] && [ -S "$EMGAPI_DATA_DIR/run/docker.sock" ]; then
  export DOCKER_HOST="unix://$EMGAPI_DATA_DIR/run/docker.sock"
fi
if [ -z "${SLURM_CONF:-}" ] && [ -f "${SLURM_DEV_DIR:-$EMGAPI_DATA_DIR/slurm}/slurm.conf" ]; then
  export SLURM_CONF="${SLURM_DEV_DIR:-$EMGAPI_DATA_DIR/slurm}/slurm.conf"
fi
export PATH="$ROOT/.venv/bin:$PATH"
RUN_DIR="$EMGAPI_DATA_DIR/run"
mkdir -p "$RUN_DIR" "$PREFECT_HOME"
