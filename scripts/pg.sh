# Sourced: a throwaway or project-local PostgreSQL cluster, started by its own binaries (no systemd).
#   pg_start DIR PORT   initialise DIR if needed, start on 127.0.0.1:PORT (socket in DIR)
#   pg_stop DIR
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

_as_pg() {  # the server refuses to run as root: use the postgres account when we are root
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    _as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
  fi
  _as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
}

pg_stop() {
  [ -f "$1/data/postmaster.pid" ] && _as_pg "$PG_BIN/pg_ctl" -D "$1/data" -m fast stop >/dev/null 2>&1 || true
}

pg_create_db() {  # dir port name
  _as_pg "$PG_BIN/psql" -h "$1" -p "$2" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$3'" | grep -q 1 \
    || _as_pg "$PG_BIN/createdb" -h "$1" -p "$2" -U postgres "$3"
}

pg_restart() {  # dir: stop (fast: connections are cut) and start again with the same options
  _as_pg "$PG_BIN/pg_ctl" -D "$1/data" -m fast -w restart >/dev/null
}
