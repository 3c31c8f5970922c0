#!/usr/bin/env bash
# What the integration, system and Podman tiers of scripts/test.sh need from the container engine at
# DOCKER_HOST: every tool's image and the platform's own (kept while their build context is unchanged:
# workflows/images.py), the image `alpine` the TES compliance suite's tasks name (a busybox stand-in),
# that suite's runner's own virtualenv (it pins pydantic 1.9) and roc-validator's (the crates' tests:
# scripts/crate-validator-venv.sh). Cold, this is mostly waiting on package downloads: the two
# virtualenvs and the Debian base (~45 s) at once, then the tools, the app (~1.5 min) and the alpine
# stand-in side by side. scripts/test.sh runs it in the background from the start, while the checks
# and the unit tier run.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
# the virtualenvs need no image: they do not wait for the base
scripts/crate-validator-venv.sh >/dev/null & pids+=($!)
scripts/tes-compliance-venv.sh >/dev/null & pids+=($!)
if [ -z "${BASE_IMAGE:-}" ]; then
  scripts/base-image.sh >/dev/null  # before the builds that share it: one debootstrap, not two
fi
scripts/images.sh & pids+=($!)
scripts/images.sh --app & pids+=($!)
scripts/alpine-image.sh >/dev/null & pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
