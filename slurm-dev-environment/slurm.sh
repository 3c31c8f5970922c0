#!/usr/bin/env bash
# A single-node Slurm cluster for development and tests, without systemd:
# munged, slurmctld and slurmd (node "localhost") run as root in the background, each in its own
# session, stopped by PID. Everything else lives under one state directory.
#
#   slurm.sh up       install the packages if missing, start munged/slurmctld/slurmd, wait for the node
#   slurm.sh down     stop the daemons (and munged if this script started it)
#   slurm.sh status   which daemons run, and sinfo
#   slurm.sh env      print `export SLURM_CONF=...`:  eval "$(slurm-dev-environment/slurm.sh env)"
#
# Environment:
#   SLURM_DEV_DIR               state directory (default ${EMGAPI_DATA_DIR:-<repo>/var}/slurm)
#   SLURM_DEV_SLURMCTLD_PORT    SlurmctldPort (default 6817)
#   SLURM_DEV_SLURMD_PORT       SlurmdPort (default 6818)
#   SLURM_DEV_CPUS              node CPUs (default: nproc)
#   SLURM_DEV_MEMORY_MB         node RealMemory in MB (default: MemTotal minus max(512 MB, 10 %))
#   SLURM_DEV_TIMEOUT           seconds `up` waits for the node to be usable (default 30)
#   SLURM_DEV_ENFORCEMENT       cgroup | OverMemoryKill: how --mem is enforced (default: cgroup where it can be)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

_data_dir() {
  if [ -n "${EMGAPI_DATA_DIR:-}" ]; then echo "$EMGAPI_DATA_DIR"; return; fi
  # The platform reads .env (scripts/env.sh); honour EMGAPI_DATA_DIR from it without importing the rest.
  if [ -f "$ROOT/.env" ]; then
    local d
    # shellcheck source=/dev/null
    d="$(set +u; set -a; . "$ROOT/.env" >/dev/null 2>&1; echo "${EMGAPI_DATA_DIR:-}")"
    if [ -n "$d" ]; then echo "$d"; return; fi
  fi
  echo "$ROOT/var"
}

STATE_DIR="${SLURM_DEV_DIR:-$(_data_dir)/slurm}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
STATE_DIR="${STATE_DIR%/}"
CONF="$STATE_DIR/slurm.conf"
RUN="$STATE_DIR/run"
LOG="$STATE_DIR/log"
export SLURM_CONF="$CONF"

SLURMCTLD_PORT="${SLURM_DEV_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_DEV_SLURMD_PORT:-6818}"
TIMEOUT="${SLURM_DEV_TIMEOUT:-30}"
MUNGE_KEY=/etc/munge/munge.key
# munged is one per machine (socket /run/munge/munge.socket.2), shared by every cluster on it: the
# pid of a munged that this script started is kept beside its socket, not in one cluster's state dir.
MUNGE_MARK=/run/munge/slurm-dev-munged.pid
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "slurm-dev: $*"; }
die() { echo "slurm-dev: error: $*" >&2; exit 1; }

_bin() {  # name -> path (sbin is not on every PATH)
  command -v "$1" 2>/dev/null && return
  local d
  for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
    if [ -x "$d/$1" ]; then echo "$d/$1"; return; fi
  done
  return 1
}

# --- processes -----------------------------------------------------------------------------------

_cmdline() { { tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null || true; }

# Is PID the daemon NAME of this cluster? (A stale pid file after a reboot may name any process.)
_is_daemon() {  # name pid
  local name=$1 pid=$2 cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(_cmdline "$pid")"
  case "$name" in
    munged) [[ "$cmd" == *munged* ]] ;;
    *) [[ "$cmd" == *"$name "* && "$cmd" == *" -f $CONF "* ]] ;;
  esac
}

# PID of daemon NAME from its pid file, or by its exact command line; empty when it does not run.
_pid_of() {
  local name=$1 f="$RUN/$1.pid" pid=""
  if [ "$name" = munged ]; then
    # (a state dir's run/munged.pid: where an earlier version of this script kept it)
    f="$MUNGE_MARK"; [ -f "$f" ] || f="$RUN/munged.pid"
  fi
  if [ -f "$f" ]; then
    pid="$(head -c 32 "$f" | tr -dc 0-9)"
    if [ -n "$pid" ] && _is_daemon "$name" "$pid"; then echo "$pid"; return; fi
  fi
  [ "$name" = munged ] && return 0   # munged counts as started by this script only through its mark
  local p
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    if _is_daemon "$name" "$p"; then echo "$p"; return; fi
  done
}

_stop_pid() {  # name pid
  local name=$1 pid=$2
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  say "stopped $name (pid $pid)"
}

# Job steps (slurmstepd) that a stopped slurmd of this cluster left behind: they inherited SLURM_CONF.
_stray_stepds() {
  local p
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == slurmstepd ]] || continue
    # (no pipe into grep -q here: with pipefail, the writer's SIGPIPE would turn a match into a failure)
    if grep -qzxF "SLURM_CONF=$CONF" "/proc/$p/environ" 2>/dev/null; then echo "$p"; fi
  done
  return 0
}

# All descendants of the given pids (the job's processes under a slurmstepd).
_descendants() {
  local -A kids=()
  local f line pid ppid rest
  for f in /proc/[0-9]*/stat; do
    line="$(cat "$f" 2>/dev/null)" || continue
    [ -n "$line" ] || continue
    pid="${line%% *}"; rest="${line##*) }"; ppid="$(echo "$rest" | cut -d' ' -f2)"
    kids[$ppid]+="$pid "
  done
  local queue=("$@") out=() c
  while [ "${#queue[@]}" -gt 0 ]; do
    pid="${queue[0]}"; queue=("${queue[@]:1}")
    for c in ${kids[$pid]:-}; do out+=("$c"); queue+=("$c"); done
  done
  echo "${out[*]:-}"
}

# slurmstepd ignores SIGTERM, and killing it alone orphans the job: stop the job's processes first.
_stop_job_steps() {
  local stepds procs pid
  stepds="$(_stray_stepds | tr '\n' ' ')"
  [ -n "${stepds// /}" ] || return 0
  # shellcheck disable=SC2086
  procs="$(_descendants $stepds)"
  say "killing running job steps left by slurmd: slurmstepd $stepds(job processes: ${procs:-none})"
  for pid in $procs; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 20); do
    local alive=0
    for pid in $procs; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 1 ] || break
    sleep 0.25
  done
  for pid in $procs $stepds; do kill -KILL "$pid" 2>/dev/null || true; done
}

_tails() {
  local f
  for f in "$LOG"/slurmctld.log "$LOG"/slurmctld.console.log "$LOG"/slurmd.log "$LOG"/slurmd.console.log \
           "$LOG"/munged.console.log; do
    [ -s "$f" ] || continue
    echo "----- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}

# --- up ------------------------------------------------------------------------------------------

_install() {
  if _bin slurmctld >/dev/null && _bin slurmd >/dev/null && _bin sinfo >/dev/null && _bin munged >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "Slurm is not installed and only root can install it: run as root, or" \
    "apt-get install -y --no-install-recommends ${PACKAGES[*]}"
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get here: install ${PACKAGES[*]}"
  say "installing ${PACKAGES[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${PACKAGES[@]}"; then
    apt-get update
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
  fi
}

_munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

_ensure_munge() {
  if [ ! -s "$MUNGE_KEY" ]; then
    say "creating $MUNGE_KEY"
    mkdir -p "$(dirname "$MUNGE_KEY")"
    if _bin mungekey >/dev/null; then
      "$(_bin mungekey)" --create --keyfile="$MUNGE_KEY" --force
    elif _bin create-munge-key >/dev/null; then
      "$(_bin create-munge-key)" -f
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
    chown munge:munge "$(dirname "$MUNGE_KEY")" "$MUNGE_KEY"
    chmod 0700 "$(dirname "$MUNGE_KEY")"
    chmod 0400 "$MUNGE_KEY"
  fi
  if _munge_ok; then
    local pid; pid="$(_pid_of munged)"
    say "munged: already answering${pid:+ (pid $pid, started by this script)}"
    return
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  setsid setpriv --reuid=munge --regid=munge --init-groups "$(_bin munged)" -F \
    >"$LOG/munged.console.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$MUNGE_MARK"
  for _ in $(seq 50); do
    if _munge_ok; then say "munged: started (pid $pid)"; return; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  tail -n 20 "$LOG/munged.console.log" /var/log/munge/munged.log >&2 2>/dev/null || true
  die "munged did not start (see $LOG/munged.console.log and /var/log/munge/munged.log)"
}

# How --mem is enforced (enforcement.sh): sets ENFORCEMENT and ENFORCEMENT_SED, writes cgroup.conf
# shellcheck source=enforcement.sh
. "$HERE/enforcement.sh"

_write_conf() {
  local cpus mem_total mem real defmem
  cpus="${SLURM_DEV_CPUS:-$(nproc)}"
  mem_total=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
  mem=$(( mem_total / 10 )); [ "$mem" -ge 512 ] || mem=512
  real="${SLURM_DEV_MEMORY_MB:-$(( mem_total - mem ))}"
  [ "$real" -ge 256 ] || real=256
  defmem=$(( real / cpus )); [ "$defmem" -le 1024 ] || defmem=1024
  slurm_dev_enforcement "$STATE_DIR"
  sed -e "s#@GENERATOR@#slurm-dev-environment/slurm.sh#g" -e "s#@HOST@#localhost#g" \
      -e "s#@NODE_ADDR@#127.0.0.1#g" -e "s#@STATE_DIR@#$STATE_DIR#g" -e "s#@SLURMCTLD_PORT@#$SLURMCTLD_PORT#g" \
      -e "s#@SLURMD_PORT@#$SLURMD_PORT#g" -e "s#@CPUS@#$cpus#g" -e "s#@REAL_MEMORY@#$real#g" \
      -e "s#@DEF_MEM_PER_CPU@#$defmem#g" "${ENFORCEMENT_SED[@]}" "$HERE/slurm.conf.in" >"$CONF.tmp"
  chmod 0644 "$CONF.tmp"
  mv -f "$CONF.tmp" "$CONF"
  say "wrote $CONF (CPUs=$cpus RealMemory=${real}M, ports $SLURMCTLD_PORT/$SLURMD_PORT, memory enforced by $ENFORCEMENT)"
}

_spawn() {  # name command...
  local name=$1; shift
  # Slurm writes its own pid file at the same path; a stale one (from before a reboot) must not
  # survive, or the daemon would signal whatever process now has that pid.
  rm -f "$RUN/$name.pid"
  (cd "$RUN" && exec setsid "$@") >>"$LOG/$name.console.log" 2>&1 </dev/null &  # not from the caller's directory
  echo $! >"$RUN/$name.pid"
  say "started $name (pid $!)"
}

_node_state() { timeout 10 sinfo -h -N -n localhost -o %T 2>/dev/null | head -n1 || true; }

_wait_ready() {
  local state="" deadline=$(( SECONDS + TIMEOUT ))
  while [ "$SECONDS" -lt "$deadline" ]; do
    local name
    for name in slurmctld slurmd; do
      if [ -z "$(_pid_of "$name")" ]; then
        _tails; die "$name exited during start-up (logs above; all logs in $LOG)"
      fi
    done
    state="$(_node_state)"
    case "$state" in
      idle|mixed|allocated|completing) say "node localhost is $state: cluster ready (SLURM_CONF=$CONF)"; return ;;
    esac
    sleep 0.3
  done
  _tails
  die "node localhost not usable after ${TIMEOUT}s (sinfo state: '${state:-no answer}'; all logs in $LOG)"
}

_ctld_answers() { [[ "$(timeout 10 scontrol ping 2>/dev/null || true)" == *"is UP"* ]]; }

_active_jobs() {  # ids of jobs that hold processes on the node
  timeout 10 squeue -h -t running,completing,configuring,suspended,stage_out -o %i 2>/dev/null | tr '\n' ' ' || true
}

_live_stepd_jobs() {  # job ids that have a slurmstepd process of this cluster
  local p
  for p in $(_stray_stepds); do { _cmdline "$p"; echo; } | sed -n 's/^slurmstepd: \[\([0-9_]*\)\..*/\1/p'; done | sort -u | tr '\n' ' '
}

# Jobs the recovered state says RUNNING whose processes died with the previous cluster (hard kill,
# killed steps): without a real reboot slurmctld would show them RUNNING until their time limit.
_cancel_orphans() {  # slurmd start time (YYYY-MM-DDTHH:MM:SS)
  local since=$1 id start live orphans=""
  live=" $(_live_stepd_jobs) "
  while read -r id start; do
    [ -n "$id" ] || continue
    [[ "$start" < "$since" ]] || continue
    [[ "$live" == *" $id "* ]] && continue
    orphans+="$id "
  done < <(timeout 10 squeue -h -t running,completing -o '%i %S' 2>/dev/null || true)
  if [ -n "$orphans" ]; then
    say "cancelling jobs whose processes did not survive the previous cluster: $orphans"
    # shellcheck disable=SC2086
    timeout 10 scancel $orphans || true
  fi
}

cmd_up() {
  _install
  local ctld slurmd
  ctld="$(_pid_of slurmctld)"; slurmd="$(_pid_of slurmd)"
  if [ -n "$ctld" ] && [ -n "$slurmd" ]; then
    if [ -w "$RUN" ]; then echo "$ctld" >"$RUN/slurmctld.pid"; echo "$slurmd" >"$RUN/slurmd.pid"; fi
    say "already running: slurmctld (pid $ctld), slurmd (pid $slurmd); SLURM_CONF=$CONF"
    return
  fi
  [ "$(id -u)" = 0 ] || die "the daemons run as root (SlurmUser=root): run 'slurm.sh up' as root"
  mkdir -p "$STATE_DIR" "$STATE_DIR/state" "$STATE_DIR/spool" "$RUN" "$LOG"
  chmod 0755 "$STATE_DIR"
  _ensure_munge
  if [ -z "$ctld" ] && [ -z "$slurmd" ]; then
    _write_conf
  fi
  [ -f "$CONF" ] || _write_conf
  if [ -z "$ctld" ]; then
    _spawn slurmctld "$(_bin slurmctld)" -D -f "$CONF"
  else
    say "slurmctld already running (pid $ctld)"
  fi
  local since=""
  if [ -z "$slurmd" ]; then
    since="$(date +%Y-%m-%dT%H:%M:%S)"
    _spawn slurmd "$(_bin slurmd)" -D -N localhost -f "$CONF"
  else
    say "slurmd already running (pid $slurmd)"
  fi
  _wait_ready
  if [ -n "$since" ]; then _cancel_orphans "$since"; fi
}

# --- down / status / env -------------------------------------------------------------------------

# Running jobs are cancelled through Slurm first, so that slurmd cleans their processes up and their
# records end CANCELLED; the partition is made INACTIVE meanwhile so that no pending job starts.
# (slurm.conf resets it to UP at the next start.) Pending jobs stay queued for the next `up`.
_cancel_running() {
  _ctld_answers || return 0
  local jobs
  jobs="$(_active_jobs)"
  [ -n "${jobs// /}" ] || return 0
  say "cancelling running jobs before stopping: $jobs"
  timeout 10 scontrol update PartitionName=debug State=INACTIVE || true
  # shellcheck disable=SC2086
  timeout 10 scancel $jobs || true
  for _ in $(seq 120); do
    jobs="$(_active_jobs)"
    [ -n "${jobs// /}" ] || return 0
    sleep 0.25
  done
  say "jobs still active after 30 s: $jobs (their steps are killed below)"
}

_other_slurm_daemons() {  # pids of any slurmctld/slurmd still running on this machine
  local p found="" ns
  ns="$(readlink /proc/self/ns/mnt)"   # (daemons inside containers have their own munged)
  for p in /proc/[0-9]*; do
    case "$(cat "$p/comm" 2>/dev/null)" in
      slurmctld|slurmd) [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && found+="${p#/proc/} " ;;
    esac
  done
  echo "${found% }"
}

cmd_down() {
  local name pid
  _cancel_running
  for name in slurmd slurmctld; do
    pid="$(_pid_of "$name")"
    if [ -n "$pid" ]; then _stop_pid "$name" "$pid"; else say "$name: not running"; fi
    rm -f "$RUN/$name.pid"
  done
  _stop_job_steps
  pid="$(_pid_of munged)"
  if [ -n "$pid" ]; then
    local others
    others="$(_other_slurm_daemons)"
    if [ -n "$others" ]; then
      say "munged (pid $pid): left running, other Slurm daemons on this machine use it (pids $others);" \
        "the 'down' that finds none stops it"
    else
      _stop_pid munged "$pid"
      rm -f "$MUNGE_MARK" "$RUN/munged.pid"
    fi
  elif _munge_ok; then
    say "munged: left running (not started by this script)"
  fi
}

cmd_status() {
  local name pid rc=0
  for name in slurmctld slurmd; do
    pid="$(_pid_of "$name")"
    if [ -n "$pid" ]; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; rc=1; fi
  done
  pid="$(_pid_of munged)"
  if _munge_ok; then
    echo "munged: answering${pid:+ (pid $pid, started by this script)}"
  else
    echo "munged: not answering"; rc=1
  fi
  echo "SLURM_CONF=$CONF"
  if [ -n "$(_pid_of slurmctld)" ]; then
    timeout 10 sinfo || true
  fi
  return "$rc"
}

cmd_env() { printf 'export SLURM_CONF=%q\n' "$CONF"; }

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
