#!/usr/bin/env bash
# The virtualenv of the GA4GH TES compliance suite's runner (third_party/openapi-test-runner), apart
# from .venv: the runner pins pydantic 1.9 and older libraries than the platform's. Packages come from
# PyPI, pinned in requirements-tes-compliance.txt; the runner's own code is read from third_party/
# (it is not on PyPI). Idempotent; fast when nothing changed. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-tes-compliance
python=${PYTHON:-python3}
stamp="$venv/.installed-$(sha256sum requirements-tes-compliance.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "tes-compliance-venv: installing the compliance runner's packages into $venv" >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --compile -r requirements-tes-compliance.txt >&2
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
echo "$PWD/$venv/bin/python"
