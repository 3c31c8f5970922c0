#!/usr/bin/env bash
# The virtualenv of roc-validator (crs4's rocrate-validator), apart from .venv: the validator pins
# rich<14 and its own rdflib/pyshacl stack, and it patches rdflib's JSON-LD loader process-wide, none
# of which the platform needs. It is a test tool: the tests (calculations/tests/crate_validation.py)
# and scripts/validate-crate.sh run it through scripts/crate_validator.py, offline. Packages come from
# PyPI, pinned in requirements-crate-validator.txt. Idempotent; fast when nothing changed. Prints the
# venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-crate-validator
python=${PYTHON:-python3}
stamp="$venv/.installed-$(sha256sum requirements-crate-validator.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "crate-validator-venv: installing roc-validator's packages into $venv" >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --compile -r requirements-crate-validator.txt >&2
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
echo "$PWD/$venv/bin/python"
