#!/usr/bin/env bash
# Write an overlay's secrets, which its secretGenerator reads and git ignores:
#   deployment/kubernetes/secrets.sh dev|production [--force]
# into deployment/kubernetes/overlays/<overlay>/secrets/*.env (0600). Files that exist are kept, all
# of them (they share passwords); --force writes them anew. Every password is random (URL-safe: it goes into database URLs).
#   dev:        everything, the database URLs naming the overlay's own PostgreSQL (Service postgres)
#   production: the Django secret key and the Prefect server's credentials; the external database's
#               URLs and the S3 keys are left as CHANGE-ME for you to fill in (the script says which)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
overlay=${1:?usage: secrets.sh dev|production [--force]}
force=${2:-}
dir="$here/overlays/$overlay"
[ -f "$dir/kustomization.yaml" ] || { echo "secrets.sh: no overlay $overlay ($dir)" >&2; exit 2; }
mkdir -p "$dir/secrets"
umask 077
if compgen -G "$dir/secrets/*.env" >/dev/null && [ "$force" != "--force" ]; then
  echo "secrets.sh: kept the secrets in $dir/secrets (--force writes them anew)"
  exit 0
fi

random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }

write() {  # file, then its lines on stdin
  local file="$dir/secrets/$1"
  cat >"$file"
  echo "secrets.sh: wrote $file"
}

prefect_auth="emgapi:$(random)"
case "$overlay" in
  dev)
    db_password=$(random)
    write postgres.env <<END
POSTGRES_PASSWORD=$db_password
END
    write app.env <<END
EMGAPI_SECRET_KEY=$(random)
EMGAPI_DB__URL=postgresql://emgapi:$db_password@postgres:5432/emgapi
PREFECT_API_AUTH_STRING=$prefect_auth
EMGAPI_METRICS__TOKEN=$(random)
END
    write prefect.env <<END
PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://emgapi:$db_password@postgres:5432/prefect
PREFECT_SERVER_API_AUTH_STRING=$prefect_auth
END
    ;;
  *)
    write app.env <<END
EMGAPI_SECRET_KEY=$(random)
EMGAPI_DB__URL=postgresql://emgapi:CHANGE-ME@db.example.org:5432/emgapi
EMGAPI_S3__ACCESS_KEY_ID=CHANGE-ME
EMGAPI_S3__SECRET_ACCESS_KEY=CHANGE-ME
PREFECT_API_AUTH_STRING=$prefect_auth
EMGAPI_METRICS__TOKEN=$(random)
END
    write prefect.env <<END
PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://emgapi:CHANGE-ME@db.example.org:5432/prefect
PREFECT_SERVER_API_AUTH_STRING=$prefect_auth
END
    if grep -l CHANGE-ME "$dir"/secrets/*.env >/dev/null 2>&1; then
      echo "secrets.sh: fill in what is marked CHANGE-ME in:" $(grep -l CHANGE-ME "$dir"/secrets/*.env)
    fi
    ;;
esac
