#!/bin/bash
# Initialise $PGDATA on first start (password auth for every TCP client, the listed databases),
# then run the server in the foreground as the postgres user, listening on all addresses.
# Extra arguments are passed to postgres (e.g. -c max_connections=300).
set -euo pipefail
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

install -d -o postgres -g postgres -m 0700 "$PGDATA"
install -d -o postgres -g postgres -m 0775 /run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  as_pg initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  for db in ${POSTGRES_DATABASES:-}; do
    # single-user mode: no server needs to run yet
    echo "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\"" | as_pg postgres --single -D "$PGDATA" postgres >/dev/null
    echo "postgres-entrypoint: created database $db"
  done
  echo "postgres-entrypoint: initialised $PGDATA (superuser $POSTGRES_USER)"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups \
  postgres -D "$PGDATA" -c listen_addresses='*' -c max_connections="${POSTGRES_MAX_CONNECTIONS:-200}" "$@"
