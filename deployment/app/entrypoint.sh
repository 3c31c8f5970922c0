#!/bin/bash
# Entry point of the application image (deployment/app/Dockerfile): one role per container.
#   api        migrate, collectstatic, then gunicorn emgapiv2.wsgi on 0.0.0.0:8000
#   worker     (munged if a munge key is given) register the flows, then the calculation worker
#   prefect    the Prefect server (UI + API) on 0.0.0.0:4200, on PREFECT_SERVER_DATABASE_CONNECTION_URL
#   s3         a development S3 server (rclone serve s3) on 0.0.0.0:9000 over $S3_ROOT
#   manage …   python manage.py …
#   anything else is executed as is (e.g. `bash`).
# Every setting comes from the environment (EMGAPI_*, PREFECT_*; see deployment/stack.env).
set -euo pipefail
cd /app

log() { echo "emgapi[$role]: $*" >&2; }

wait_for_file() {  # path seconds
  local i
  for i in $(seq "$2"); do [ -s "$1" ] && return 0; sleep 1; done
  log "$1 did not appear within $2 s"; return 1
}

# The worker talks to Slurm through munge: it needs munged running here with the cluster's key.
# MUNGE_KEY_FILE names the key (a mounted secret or shared volume); it is copied so that it belongs
# to this image's munge user with the mode munged insists on.
start_munge() {
  [ -n "${MUNGE_KEY_FILE:-}" ] || return 0
  wait_for_file "$MUNGE_KEY_FILE" "${MUNGE_KEY_WAIT_SECONDS:-120}"
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  install -o munge -g munge -m 0400 "$MUNGE_KEY_FILE" /etc/munge/munge.key
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged
  local i
  for i in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && { log "munged ready"; return 0; }; sleep 0.2; done
  log "munged did not start"; return 1
}

role=${1:-api}
[ $# -gt 0 ] && shift
case "$role" in
  api)
    python manage.py migrate --noinput
    python manage.py collectstatic --noinput -v0
    exec gunicorn -c python:emgapiv2.gunicorn_conf emgapiv2.wsgi --bind "0.0.0.0:${WEB_PORT:-8000}" \
      --access-logfile - "$@"
    ;;
  worker)
    start_munge
    if [ -n "${SLURM_CONF:-}" ]; then wait_for_file "$SLURM_CONF" "${SLURM_CONF_WAIT_SECONDS:-120}"; fi
    python -m workflows.deploy all
    exec python -m workflows.worker "$@"
    ;;
  prefect)
    exec prefect server start --host 0.0.0.0 --port "${PREFECT_SERVER_API_PORT:-4200}" "$@"
    ;;
  s3)
    : "${S3_ACCESS_KEY_ID:?set S3_ACCESS_KEY_ID}" "${S3_SECRET_ACCESS_KEY:?set S3_SECRET_ACCESS_KEY}"
    root=${S3_ROOT:-/s3}
    # a bucket is a top-level directory of the served tree
    for bucket in ${S3_BUCKETS:-${EMGAPI_S3__BUCKET:-emgapi}}; do mkdir -p "$root/$bucket"; done
    exec rclone serve s3 --addr "0.0.0.0:${S3_PORT:-9000}" --auth-key "$S3_ACCESS_KEY_ID,$S3_SECRET_ACCESS_KEY" \
      --config /dev/null "$@" "$root"
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
