#!/usr/bin/env bash
# `task up`: start everything on embedded defaults, run the demo, print where to look, keep serving.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
trap 'echo; scripts/services.sh stop all; exit 0' INT TERM
scripts/services.sh start all
password_file="$EMGAPI_DATA_DIR/admin-password"
[ -f "$password_file" ] || (umask 077; python -c "import secrets; print(secrets.token_urlsafe(12))" > "$password_file")
chmod 600 "$password_file"
DJANGO_SUPERUSER_PASSWORD="$(cat "$password_file")" python manage.py createsuperuser --noinput \
  --username admin --email admin@localhost >/dev/null 2>&1 || true
python demo/run_demo.py --token "$(python manage.py create_token demo)"
cat <<MSG

Platform running:
  API docs         $EMGAPI_PUBLIC_URL/api/v2/docs
  Django admin     $EMGAPI_PUBLIC_URL/admin/   (user admin, password in $password_file)
  Prefect UI       http://127.0.0.1:$PREFECT_PORT   (it asks for: ${PREFECT_API_AUTH_STRING%%:*}:<password in $(secret_file prefect-api-password)>)
  API token        ./taskw token USER=<name>
Logs in $RUN_DIR. Press Ctrl-C to stop everything.
MSG
# serve until Ctrl-C, or until `task down` has stopped the API
while [ -f "$RUN_DIR/web.pid" ]; do sleep 2 & wait $!; done
