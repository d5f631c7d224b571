#!/bin/sh
# The guest side of the guest-kernel tests, started at boot by
# exprun-guest-tests.service from the host's 9p share (SHARE). Installs the
# exprun under test, runs every SHARE/cases/*.sh in name order (each with a
# time limit), and writes SHARE/out/results: one `PASS NAME` or `FAIL NAME
# (why)` line per case, then `DONE`. Each case's output is in SHARE/out/NAME.log.
set -u
share=${1:?usage: run-cases.sh SHARE}
out=$share/out
mkdir -p "$out"
: > "$out/results"
say() { echo "$*" >> "$out/results"; echo "guest: $*" > /dev/console; }

install -m 0755 "$share/exprun" /usr/local/bin/exprun || { say "FAIL setup (cannot install exprun)"; say DONE; exit 1; }
{
  echo "kernel: $(uname -r)"
  echo "pid 1: $(cat /proc/1/comm)"
  echo "cgroup fs: $(stat -f -c %T /sys/fs/cgroup)"
  echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
  echo "cpus: $(nproc)"
} > "$out/guest-env.txt"

# The service's cgroup is delegated to it (Delegate=yes): move the runner into
# a leaf of it, so that the service cgroup itself holds no process and can be
# the parent of the containers' cgroups.
svc=$(sed -n 's/^0:://p' /proc/self/cgroup)
mkdir -p "/sys/fs/cgroup$svc/runner"
echo $$ > "/sys/fs/cgroup$svc/runner/cgroup.procs" || { say "FAIL setup (cannot enter $svc/runner)"; say DONE; exit 1; }

export GUEST_SHARE=$share GUEST_LIB=$share/lib.sh GUEST_CGROUP_PARENT=$svc
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for case in "$share"/cases/*.sh; do
  name=$(basename "$case" .sh)
  echo "guest: running $name" > /dev/console
  # A case may ask for a longer limit with a line `# timeout: SECONDS`.
  limit=$(sed -n 's/^# timeout: *\([0-9][0-9]*\) *$/\1/p' "$case" | head -n1)
  start=$(date +%s)
  timeout -k 10 "${limit:-${GUEST_CASE_TIMEOUT:-300}}" sh "$case" > "$out/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ]; then
    say "PASS $name (${secs}s)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    say "FAIL $name (timed out after ${secs}s)"
  else
    say "FAIL $name (exit $rc after ${secs}s)"
  fi
done
say DONE
sync
# What a failed case left running goes now, so that the guest powers off
# without waiting for systemd's stop timeout.
for d in "/sys/fs/cgroup$svc"/*/; do
  [ "$d" = "/sys/fs/cgroup$svc/runner/" ] || echo 1 > "${d}cgroup.kill"
done
