#!/bin/bash
# Entrypoint of the Slurm container (Dockerfile beside this file): a one-node cluster whose
# controller and only node are this container's hostname.
#  1. the cluster's munge key comes from a shared volume ($MUNGE_KEY_SHARED; created there if absent)
#     and is installed as /etc/munge/munge.key for this container's munge user;
#  2. slurm.conf is generated from slurm.conf.in into $SLURM_CONF and copied to $SLURM_CONF_SHARED,
#     a volume that submitting containers mount (they set SLURM_CONF to it and run munged with the key);
#  3. munged, slurmctld and `slurmd -N $SLURM_HOSTNAME` run in the foreground of this script; the
#     container stops (exit 1) when any of them exits.
# Environment (defaults in the Dockerfile):
#   SLURM_HOSTNAME (slurm)        controller and node name; must be the container's hostname
#   MUNGE_KEY_SHARED              /etc/munge-shared/munge.key
#   SLURM_CONF_SHARED             /etc/slurm-shared/slurm.conf
#   SLURM_STATE_DIR               /var/lib/slurm-dev (state, spool, logs, jobcomp file; may be a volume)
#   SLURM_CPUS, SLURM_MEMORY_MB   node size (default: nproc; MemTotal or the container's memory
#                                 limit, minus max(512 MB, 10 %))
#   SLURMCTLD_PORT, SLURMD_PORT   6817, 6818
set -euo pipefail

log() { echo "slurm-dev-entrypoint: $*" >&2; }
die() { log "error: $*"; exit 1; }

host="${SLURM_HOSTNAME:-slurm}"
key_shared="${MUNGE_KEY_SHARED:-/etc/munge-shared/munge.key}"
conf="${SLURM_CONF:-/etc/slurm/slurm.conf}"
conf_shared="${SLURM_CONF_SHARED:-/etc/slurm-shared/slurm.conf}"
state="${SLURM_STATE_DIR:-/var/lib/slurm-dev}"
template="${SLURM_CONF_TEMPLATE:-/usr/local/share/slurm-dev/slurm.conf.in}"
export SLURM_CONF="$conf"

# slurmctld only runs on the host named by SlurmctldHost.
actual="$(hostname -s)"
[ "$actual" = "$host" ] || die "the container's hostname is '$actual' but SLURM_HOSTNAME is '$host':" \
  "set 'hostname: $host' on the service (or SLURM_HOSTNAME=$actual)"

# --- 1. munge key ---------------------------------------------------------------------------------
mkdir -p "$(dirname "$key_shared")"
if [ ! -s "$key_shared" ]; then
  # created under a temporary name and renamed, so that a client never reads half a key
  (umask 077
   if command -v mungekey >/dev/null; then
     mungekey --create --keyfile="$key_shared.tmp.$$" --force
   else
     dd if=/dev/urandom of="$key_shared.tmp.$$" bs=1024 count=1 status=none
   fi)
  chmod 0400 "$key_shared.tmp.$$"
  mv -f "$key_shared.tmp.$$" "$key_shared"
  log "created the cluster's munge key at $key_shared"
else
  log "using the cluster's munge key at $key_shared"
fi
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
install -o munge -g munge -m 0400 "$key_shared" /etc/munge/munge.key

# --- 2. slurm.conf --------------------------------------------------------------------------------
mkdir -p "$state/state" "$state/spool" "$state/run" "$state/log" "$(dirname "$conf")" "$(dirname "$conf_shared")"
# A pid file left by a previous run of this container would make a daemon signal whatever has that pid now.
rm -f "$state/run/slurmctld.pid" "$state/run/slurmd.pid"

cpus="${SLURM_CPUS:-$(nproc)}"
mem_total=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
for limit_file in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
  if [ -r "$limit_file" ]; then
    limit="$(cat "$limit_file")"
    if [[ "$limit" =~ ^[0-9]+$ ]] && [ $(( limit / 1048576 )) -lt "$mem_total" ]; then
      mem_total=$(( limit / 1048576 ))
    fi
    break
  fi
done
margin=$(( mem_total / 10 )); [ "$margin" -ge 512 ] || margin=512
memory="${SLURM_MEMORY_MB:-$(( mem_total - margin ))}"
[ "$memory" -ge 256 ] || memory=256
def_mem=$(( memory / cpus )); [ "$def_mem" -le 1024 ] || def_mem=1024

# how --mem is enforced: a memory cgroup per job if this container may make cgroups, else OverMemoryKill
# shellcheck source=enforcement.sh
. "$(dirname "$template")/enforcement.sh"
slurm_dev_enforcement "$(dirname "$conf")"
sed -e "s#@GENERATOR@#slurm-dev-environment/entrypoint.sh#g" -e "s#@HOST@#$host#g" \
    -e "s#@NODE_ADDR@#$host#g" -e "s#@STATE_DIR@#$state#g" \
    -e "s#@SLURMCTLD_PORT@#${SLURMCTLD_PORT:-6817}#g" -e "s#@SLURMD_PORT@#${SLURMD_PORT:-6818}#g" \
    -e "s#@CPUS@#$cpus#g" -e "s#@REAL_MEMORY@#$memory#g" -e "s#@DEF_MEM_PER_CPU@#$def_mem#g" \
    "${ENFORCEMENT_SED[@]}" "$template" >"$conf.tmp"
chmod 0644 "$conf.tmp"
mv -f "$conf.tmp" "$conf"
# rename into place: a client polling for the file never sees it half written
cp "$conf" "$conf_shared.tmp.$$"
chmod 0644 "$conf_shared.tmp.$$"
mv -f "$conf_shared.tmp.$$" "$conf_shared"
log "node $host: CPUs=$cpus RealMemory=${memory}M, memory enforced by $ENFORCEMENT; slurm.conf at $conf and $conf_shared"

# --- 3. daemons -----------------------------------------------------------------------------------
pids=()
# shellcheck disable=SC2329  # the TERM/INT trap calls it
stop() {
  log "stopping"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
  exit 0
}
trap stop TERM INT

setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F &
pids+=($!)
for _ in $(seq 50); do
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then break; fi
  sleep 0.2
done
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged did not start"
log "munged ready"

# Both daemons log to $state/log and, in the foreground (-D), to stderr: the container's log.
/usr/sbin/slurmctld -D -f "$conf" &
pids+=($!)
/usr/sbin/slurmd -D -N "$host" -f "$conf" &
pids+=($!)
log "slurmctld (pid ${pids[1]}) and slurmd (pid ${pids[2]}) started"

set +e
wait -n
rc=$?
log "a daemon exited (status $rc): stopping the container"
kill -TERM "${pids[@]}" 2>/dev/null
wait
exit 1
