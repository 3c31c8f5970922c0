#!/usr/bin/env bash
# Build every tool's container image (python -m workflows.images) on the engine at DOCKER_HOST, or
# on the project-local dockerd (started if needed). BASE_IMAGE picks the Dockerfiles' base: unset,
# the local Debian base emgapi/base:bookworm is built first (scripts/base-image.sh), since no
# registry is needed for it. Arguments go to workflows.images (tool names, --force).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
if [ -z "${DOCKER_HOST:-}" ]; then
  scripts/engines.sh up docker >&2
  DOCKER_HOST=$(scripts/engines.sh host docker)
  export DOCKER_HOST
fi
if [ -z "${BASE_IMAGE:-}" ]; then
  scripts/base-image.sh "$DOCKER_HOST" >/dev/null
  export BASE_IMAGE=emgapi/base:bookworm
fi
python -m workflows.images "$@"
