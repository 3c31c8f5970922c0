#!/usr/bin/env bash
# Build every tool's container image (python -m workflows.images) on the engine at DOCKER_HOST, or
# on the project-local dockerd (started if needed). An image is rebuilt only when its build context
# changed (a label holds its sha256). BASE_IMAGE picks the Dockerfiles' base: unset, the local
# Debian base emgapi/base:bookworm, built (scripts/base-image.sh) when a build first needs it, since
# no registry is needed for it. Arguments go to workflows.images (tool names, --app, --force,
# --from ENGINE to copy images another engine already built).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
if [ -z "${DOCKER_HOST:-}" ]; then
  scripts/engines.sh up docker >&2
  DOCKER_HOST=$(scripts/engines.sh host docker)
  export DOCKER_HOST
fi
export BASE_IMAGE="${BASE_IMAGE:-emgapi/base:bookworm}"
python -m workflows.images "$@"
