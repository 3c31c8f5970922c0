#!/usr/bin/env bash
# A stand-in for the image `alpine` where no registry is reachable: a busybox-static rootfs (sh, echo,
# cat, … as busybox applets), imported as alpine:latest, so that tasks naming `alpine` (the GA4GH TES
# compliance suite's) run. It is not Alpine Linux (no apk, no musl): a test fixture for the
# project-local engine, never for an engine that serves real users.
#   alpine-image.sh [ENGINE]   ENGINE: a socket path or unix:// URL (default: $DOCKER_HOST, else the
#                              project-local dockerd of scripts/engines.sh, started if needed)
# Nothing happens if the engine has an image named alpine already (ours, or a real one). The busybox
# binary comes from Debian's busybox-static package, downloaded (not installed) into
# $EMGAPI_DATA_DIR/cache/busybox-static.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$(dirname "$0")/apt.sh"
cd "$ROOT"

IMAGE=alpine:latest
LABEL=org.emgapi.stand-in=busybox-static
CACHE_DIR="$EMGAPI_DATA_DIR/cache/busybox-static"
. "$(dirname "$0")/engine-cli.sh"
use_engine "${1:-}" alpine-image
if id=$(image_id "$IMAGE"); then
  echo "alpine-image: $IMAGE already in $DOCKER_HOST" >&2
  echo "$id"
  exit 0
fi

busybox="$CACHE_DIR/bin/busybox"
if [ ! -x "$busybox" ]; then
  mkdir -p "$CACHE_DIR"
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  # apt-get download needs the package lists; it installs nothing
  (cd "$download" && { apt-get download busybox-static >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download busybox-static >/dev/null; }; })
  dpkg-deb -x "$download"/busybox-static_*.deb "$download/root"
  install -D -m 0755 "$download/root/bin/busybox" "$busybox"
  rm -rf "$download"
  trap - EXIT
fi

started=$SECONDS
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner -c . | "$DOCKER_CLI" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/sh"]' \
  -c "LABEL $LABEL" \
  -m "busybox-static $("$busybox" | head -1 | cut -d' ' -f2): a stand-in for alpine (no registry here)" \
  - "$IMAGE" >/dev/null
id=$("$DOCKER_CLI" image inspect -f '{{.Id}}' "$IMAGE")
echo "alpine-image: imported $IMAGE (busybox-static) into $DOCKER_HOST in $(( SECONDS - started )) s" >&2
echo "$id"
