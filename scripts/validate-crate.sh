#!/usr/bin/env bash
# Validate an RO-Crate (a .zip or a directory) with roc-validator (crs4's rocrate-validator) against a
# Workflow Run Crate 0.5 profile, offline: its JSON-LD contexts are answered from
# third_party/ro-crate-contexts/ and nothing else is fetched (scripts/crate_validator.py). The
# validator lives in its own virtualenv (scripts/crate-validator-venv.sh makes it on first use).
# Usage: scripts/validate-crate.sh CRATE [PROFILE [VALIDATOR OPTIONS...]]
#   PROFILE  process-run-crate-0.5 (a calculation or a TES task; the default)
#            provenance-run-crate-0.5 (a workflow run)
#   e.g. scripts/validate-crate.sh run.crate.zip process-run-crate-0.5 --requirement-severity RECOMMENDED
# Exits non-zero when the crate is not valid.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
crate=$1
profile=${2:-process-run-crate-0.5}
shift $(( $# >= 2 ? 2 : 1 ))
python=$("$root/scripts/crate-validator-venv.sh")
exec "$python" "$root/scripts/crate_validator.py" cli validate --no-paging --no-cache --verbose \
  --profile-identifier "$profile" "$@" "$crate"
