#!/usr/bin/env bash
# Smoke test of the dev cluster: exit codes, output files, resources, cancel, a burst of held jobs.
# Starts the cluster if it is down (and stops it again at the end); exits non-zero on the first failure.
#   slurm-dev-environment/check.sh [N]     N held jobs for the burst (default 1000)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
S="$HERE/slurm.sh"
N="${1:-1000}"
work="$(mktemp -d /tmp/slurm-dev-check.XXXXXX)"
cd "$work"   # jobs run here; their default slurm-%j.out files too

started=""
ids=()
cleanup() {
  if [ "${#ids[@]}" -gt 0 ]; then scancel "${ids[@]}" 2>/dev/null || true; fi
  if [ -n "$started" ]; then "$S" down >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
t0() { date +%s%N; }
ms() { echo "$(( ($(date +%s%N) - $1) / 1000000 )) ms"; }
wait_final() {  # job id -> final state (squeue -t all), within 30 s
  local s=""
  for _ in $(seq 300); do
    s="$(squeue -h -t all -j "$1" -o %T)"
    case "$s" in PENDING|CONFIGURING|RUNNING|COMPLETING|"") sleep 0.1 ;; *) echo "$s"; return ;; esac
  done
  echo "${s:-UNKNOWN}"
}

if ! "$S" status >/dev/null 2>&1; then started=1; "$S" up; fi
eval "$("$S" env)"

t=$(t0); j=$(sbatch --parsable --wrap 'exit 7'); ids+=("$j")
state="$(wait_final "$j")"
[ "$state" = FAILED ] || fail "exit 7 job ended $state"
scontrol show job "$j" | grep -q 'ExitCode=7:0' || fail "exit 7 job: no ExitCode=7:0 in scontrol show job"
ok "sbatch --wrap 'exit 7' -> FAILED, ExitCode=7:0 ($(ms "$t"))"

t=$(t0)
# shellcheck disable=SC2016  # expanded by the job's shell
j=$(sbatch --parsable --mem=100M --cpus-per-task=1 --time=1 --output="$work/out-%j.txt" --error="$work/err-%j.txt" \
      --wrap 'echo "stdout of $SLURM_JOB_ID"; echo "stderr of $SLURM_JOB_ID" >&2')
ids+=("$j")
state="$(wait_final "$j")"
[ "$state" = COMPLETED ] || fail "normal job ended $state"
[ "$(cat "$work/out-$j.txt")" = "stdout of $j" ] || fail "stdout file $work/out-$j.txt"
[ "$(cat "$work/err-$j.txt")" = "stderr of $j" ] || fail "stderr file $work/err-$j.txt"
scontrol show job "$j" | grep -q 'MinMemoryNode=100M' || fail "--mem=100M not recorded"
ok "--mem=100M --cpus-per-task=1 --time=1 job -> COMPLETED, --output/--error files written ($(ms "$t"))"

if sbatch --mem=100000000M --wrap true >/dev/null 2>&1; then fail "--mem beyond the node was accepted"; fi
if sbatch --cpus-per-task=4096 --wrap true >/dev/null 2>&1; then fail "--cpus-per-task beyond the node was accepted"; fi
ok "requests beyond the node are rejected at submission"

j=$(sbatch --parsable --wrap 'sleep 300'); ids+=("$j")
for _ in $(seq 100); do [ "$(squeue -h -t all -j "$j" -o %T)" = RUNNING ] && break; sleep 0.1; done
t=$(t0); scancel "$j"
state="$(wait_final "$j")"
[ "$state" = CANCELLED ] || fail "cancelled job ended $state"
ok "scancel of a running job -> CANCELLED ($(ms "$t"))"

t=$(t0)
held=()
for _ in $(seq "$N"); do held+=("$(sbatch --parsable --hold --cpus-per-task=1 --wrap 'sleep 600')"); done
ids+=("${held[@]}")
ok "$N held jobs submitted ($(ms "$t"))"
t=$(t0); n="$(squeue -h -t all -o '%i|%T' | grep -c '|PENDING$')"
[ "$n" -ge "$N" ] || fail "squeue lists $n pending jobs, expected $N"
ok "squeue -h -t all -o '%i|%T' lists them ($(ms "$t"))"
t=$(t0); scancel "${held[@]}"
ok "scancel of $N jobs ($(ms "$t"))"
for _ in $(seq 100); do
  [ "$(squeue -h -j "$(IFS=,; echo "${held[*]}")" -o %i | wc -l)" = 0 ] && break; sleep 0.1
done
ids=()
echo "all checks passed"
