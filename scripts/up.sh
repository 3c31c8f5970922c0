#!/usr/bin/env bash
# `task up`: start everything on embedded defaults, run the demo, print where to look, keep serving.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
trap 'echo; scripts/services.sh stop all; exit 0' INT TERM
scripts/services.sh start all  # (it makes the admin's superuser on the first start: ensure_admin)
python demo/run_demo.py --token "$(python manage.py create_token demo)"
cat <<MSG

Platform running:
  API docs         $EMGAPI_PUBLIC_URL/api/v2/docs
  Django admin     $(python manage.py ensure_admin)
  Prefect UI       http://127.0.0.1:$PREFECT_PORT   (it asks for: ${PREFECT_API_AUTH_STRING%%:*}:<password in $(secret_file prefect-api-password)>)
  API token        ./taskw token USER=<name>
Logs in $RUN_DIR. Press Ctrl-C to stop everything.
MSG
# serve until Ctrl-C, or until `task down` has stopped the API
while [ -f "$RUN_DIR/web.pid" ]; do sleep 2 & wait $!; done
