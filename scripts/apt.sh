# Sourced: install Debian packages a script needs and the machine lacks (CI runs on a fresh one).
#   apt_install WHO PACKAGE...   WHO prefixes the messages (the calling script's name)
apt_install() {
  local who=$1; shift
  if [ "$(id -u)" -ne 0 ]; then
    echo "$who: please install as root: apt-get install $*" >&2
    exit 1
  fi
  echo "$who: installing $* (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
