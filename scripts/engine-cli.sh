# Sourced by the scripts that make images (base-image.sh, alpine-image.sh), after env.sh and apt.sh.
#   use_engine ENGINE WHO   DOCKER_HOST from ENGINE (a socket path or a unix://, tcp://, ssh:// URL;
#                           empty: $DOCKER_HOST, else the project-local dockerd, started if needed),
#                           and the Docker CLI installed if missing (WHO names the caller in apt's log)
#   image_id IMAGE          print the image's id and succeed if the engine has it
DOCKER_CLI=/usr/bin/docker  # Debian's 20.10 CLI: the /usr/local/bin one on PATH has no legacy builder

use_engine() {
  local engine=${1:-${DOCKER_HOST:-}}
  if [ -z "$engine" ]; then
    scripts/engines.sh up docker >&2
    engine=$(scripts/engines.sh host docker)
  fi
  case "$engine" in unix://*|tcp://*|ssh://*) ;; *) engine="unix://$engine" ;; esac
  export DOCKER_HOST="$engine"
  [ -x "$DOCKER_CLI" ] || apt_install "$2" docker.io
}

image_id() {
  "$DOCKER_CLI" image inspect -f '{{.Id}}' "$1" 2>/dev/null
}
