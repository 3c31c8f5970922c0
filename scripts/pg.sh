# Sourced: a project-local PostgreSQL cluster, started by its own binaries (no systemd).
#   pg_start DIR PORT [PWFILE]  initialise DIR if needed, start on 127.0.0.1:PORT (socket in DIR, a
#                               directory only postgres can enter). With PWFILE, the superuser has
#                               that password and every connection needs it (scram-sha-256); a
#                               cluster made earlier with `trust` is converted. Without: trust, for
#                               throwaway test clusters only.
#   pg_stop DIR                 pg_restart DIR                 pg_create_db DIR PORT NAME
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

_as_pg() {  # the server refuses to run as root: use the postgres account when we are root
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_reach() {  # dir: let the postgres account traverse (only) each directory above DIR it cannot
  [ "$(id -u)" -eq 0 ] || return 0
  local d; d=$(dirname "$(realpath "$1")")
  while [ "$d" != / ]; do
    if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
      command -v setfacl >/dev/null || { . "$(dirname "${BASH_SOURCE[0]}")/apt.sh"; apt_install pg acl; }
      setfacl -m u:postgres:x "$d"  # traverse, not list: the data directory stays 0700 for everyone else
    fi
    d=$(dirname "$d")
  done
}

_pg_harden() {  # dir pwfile: a cluster initialised with trust gets the password and scram
  local hba="$1/data/pg_hba.conf"
  grep -Eq '^[^#]*[[:space:]]trust([[:space:]]|$)' "$hba" || return 0
  # the password goes in on stdin, never on a command line (ps would show it)
  printf "SET password_encryption = 'scram-sha-256';\nALTER ROLE postgres PASSWORD '%s';\n" "$(cat "$3")" \
    | _as_pg "$PG_BIN/psql" -h "$1" -p "$2" -U postgres -qtA -f - >/dev/null
  _as_pg sed -i -E 's/^([^#]*[[:space:]])trust([[:space:]]|$)/\1scram-sha-256\2/' "$hba"
  _as_pg "$PG_BIN/pg_ctl" -D "$1/data" reload >/dev/null
}

pg_start() {
  local dir=$1 port=$2 pwfile=${3:-}
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  chmod 700 "$dir"
  _pg_reach "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    if [ -n "$pwfile" ]; then
      install -m 600 -o "$(stat -c %U "$dir")" "$pwfile" "$dir/.pwfile"
      _as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/.pwfile" >/dev/null
      rm -f "$dir/.pwfile"
    else
      _as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    fi
  fi
  _as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  [ -z "$pwfile" ] || _pg_harden "$dir" "$port" "$pwfile"
}

pg_stop() {
  [ -f "$1/data/postmaster.pid" ] && _as_pg "$PG_BIN/pg_ctl" -D "$1/data" -m fast stop >/dev/null 2>&1 || true
}

pg_create_db() {  # dir port name (an exported PGPASSWORD for a cluster with a password: runuser keeps
  # the environment, so the password never appears on a command line)
  _as_pg "$PG_BIN/psql" -h "$1" -p "$2" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$3'" \
    | grep -q 1 || _as_pg "$PG_BIN/createdb" -h "$1" -p "$2" -U postgres "$3"
}

pg_restart() {  # dir: stop (fast: connections are cut) and start again with the same options
  _as_pg "$PG_BIN/pg_ctl" -D "$1/data" -m fast -w restart >/dev/null
}
