#!/usr/bin/env bash
# Build the local base image emgapi/base:bookworm (a Debian 12 minbase rootfs, like debian:bookworm-slim)
# for machines where no container registry is reachable, so `FROM debian:bookworm-slim` cannot work.
# The project's Dockerfiles take their base as a build ARG: BASE_IMAGE=emgapi/base:bookworm.
#   base-image.sh [ENGINE]   ENGINE: a socket path or unix:// URL (default: $DOCKER_HOST, else the
#                            project-local dockerd of scripts/engines.sh, started if needed)
# Nothing happens if the engine already has the image. The rootfs tarball is cached at
# $EMGAPI_DATA_DIR/cache/bookworm-minbase.tar, so importing it into another engine (podman) is instant.
# The image carries this machine's apt settings that decide whether its mirror is usable (proxy,
# Check-Valid-Until) and its local CA certificates (/usr/local/share/ca-certificates: a TLS-intercepting
# egress proxy), so that apt and pip work in `RUN` steps of images built FROM it. It is a machine-local
# image: do not push it to a public registry.
# Environment: BASE_IMAGE_NAME (default emgapi/base:bookworm), REBUILD_BASE=1 to rebuild the tarball,
# DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (default: what this machine's apt sources use).
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$(dirname "$0")/apt.sh"
cd "$ROOT"

IMAGE=${BASE_IMAGE_NAME:-emgapi/base:bookworm}
SUITE=bookworm
CACHE_DIR="$EMGAPI_DATA_DIR/cache"
TARBALL="$CACHE_DIR/$SUITE-minbase.tar"
. "$(dirname "$0")/engine-cli.sh"
use_engine "${1:-}" base-image
_apt_install() { apt_install base-image "$@"; }
if [ "${REBUILD_BASE:-0}" != 1 ] && id=$(image_id "$IMAGE"); then
  echo "base-image: $IMAGE already in $DOCKER_HOST" >&2
  echo "$id"
  exit 0
fi

# The mirrors this machine's apt uses (a local mirror or proxy must be reachable from containers too)
_repo_uri() {  # release -> URI from the host's apt sources
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk -v r="$1" '$2 == r { print $1; exit }'
}
mirror=${DEBIAN_MIRROR:-$(_repo_uri "$SUITE")}
mirror=${mirror:-http://deb.debian.org/debian/}
security=${DEBIAN_SECURITY_MIRROR:-$(_repo_uri "$SUITE-security")}
security=${security:-http://deb.debian.org/debian-security/}

build_tarball() {
  command -v debootstrap >/dev/null || _apt_install debootstrap
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || _apt_install debian-archive-keyring
  mkdir -p "$CACHE_DIR"
  local rootfs; rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  local started=$SECONDS
  echo "base-image: debootstrap --variant=minbase $SUITE from $mirror (~35 s)" >&2
  debootstrap --variant=minbase --include=ca-certificates --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$rootfs" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }

  # apt sources as in debian:bookworm-slim, on this machine's mirrors
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # this machine's apt settings that decide whether a mirror is reachable and accepted
  # (proxies; Check-Valid-Until/Check-Date for snapshot mirrors)
  apt-config dump 2>/dev/null \
    | grep -E '^Acquire::(https?|ftp)::Proxy|^Acquire::Check-Valid-Until|^Acquire::Check-Date' \
    >"$rootfs/etc/apt/apt.conf.d/90host-mirror" || true
  [ -s "$rootfs/etc/apt/apt.conf.d/90host-mirror" ] || rm -f "$rootfs/etc/apt/apt.conf.d/90host-mirror"
  # this machine's local CA certificates (e.g. of a TLS-intercepting egress proxy: without them pip
  # cannot reach PyPI from a build). They stay in the image, and ca-certificates (installed here)
  # keeps them in /etc/ssl/certs/ca-certificates.crt whenever a derived image reinstalls it.
  local ca
  for ca in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$ca" ] || continue
    install -D -m 0644 "$ca" "$rootfs/usr/local/share/ca-certificates/$(basename "$ca")"
    echo "base-image: added the machine's CA certificate $ca" >&2
  done
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  # the container-image conventions of the official Debian images (debuerreotype)
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  # documentation and translations are not installed (as in the -slim images)
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
  : >"$rootfs/etc/machine-id"
  echo "$SUITE" >"$rootfs/etc/hostname"
  tar -C "$rootfs" --numeric-owner --xattrs -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$rootfs"
  trap - EXIT
  echo "base-image: $TARBALL ($(du -h "$TARBALL" | cut -f1)) built in $(( SECONDS - started )) s" >&2
}

if [ "${REBUILD_BASE:-0}" = 1 ] || [ ! -f "$TARBALL" ]; then build_tarball; fi

started=$SECONDS
"$DOCKER_CLI" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["bash"]' \
  -m "debootstrap --variant=minbase $SUITE ($mirror)" \
  "$TARBALL" "$IMAGE" >/dev/null
id=$("$DOCKER_CLI" image inspect -f '{{.Id}}' "$IMAGE")
echo "base-image: imported $IMAGE into $DOCKER_HOST in $(( SECONDS - started )) s" >&2
echo "$id"
