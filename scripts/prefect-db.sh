# Sourced (after env.sh): PREFECT_SERVER_DATABASE_CONNECTION_URL of the Prefect server's database,
# the project-local PostgreSQL cluster (var/prefect-db) unless one is configured. Its password is
# the generated one (var/secrets/prefect-db-password, 0600).
PREFECT_DB_DIR="$EMGAPI_DATA_DIR/prefect-db"
PREFECT_DB_PORT="${PREFECT_DB_PORT:-5433}"
if [ -z "${PREFECT_SERVER_DATABASE_CONNECTION_URL:-}" ]; then
  export PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://postgres:$(secret prefect-db-password)@127.0.0.1:$PREFECT_DB_PORT/prefect"
fi
