#!/usr/bin/env bash
# What the integration, system and Podman tiers of scripts/test.sh need from the container engine at
# DOCKER_HOST: every tool's image and the platform's own (kept while their build context is unchanged:
# workflows/images.py), the image `alpine` the TES compliance suite's tasks name (a busybox stand-in),
# that suite's runner's own virtualenv (it pins pydantic 1.9) and roc-validator's (the crates' tests:
# scripts/crate-validator-venv.sh). Cold, this is mostly waiting on package downloads: the two
# virtualenvs and the Debian base (~45 s) at once, then the tools, the app (~1.5 min) and the alpine
# stand-in side by side. scripts/test.sh runs it in the background while the unit tier runs.
# With IMAGES_READY_DIR, each part says when it is made, with its exit status: the file `tools` for
# everything but the app image (what the integration tier needs from its start), `app` for the app
# image (only the Docker work pool's test needs it, at the end of the session, which waits for it).
set -euo pipefail
cd "$(dirname "$0")/.."
ready() {  # part status: written whole, then renamed, so that a reader never sees half of it
  if [ -n "${IMAGES_READY_DIR:-}" ]; then
    echo "$2" >"$IMAGES_READY_DIR/$1.part" && mv "$IMAGES_READY_DIR/$1.part" "$IMAGES_READY_DIR/$1"
  fi
}
pids=()
# the virtualenvs need no image: they do not wait for the base
scripts/crate-validator-venv.sh >/dev/null & pids+=($!)
scripts/tes-compliance-venv.sh >/dev/null & pids+=($!)
if [ -z "${BASE_IMAGE:-}" ]; then
  # before the builds that share it: one debootstrap, not two
  scripts/base-image.sh >/dev/null || { status=$?; ready tools $status; ready app $status; exit $status; }
fi
{ status=0; scripts/images.sh --app || status=$?; ready app $status; exit $status; } & app=$!
scripts/images.sh & pids+=($!)
scripts/alpine-image.sh >/dev/null & pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
ready tools $status
wait $app || status=$?
exit $status
