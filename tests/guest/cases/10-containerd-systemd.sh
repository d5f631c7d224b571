# containerd with `SystemdCgroup = true` runs the CRI pod lifecycle of
# tests/containerd_cri.rs (a pod sandbox, a worker with exec, update and stop,
# a failing container, an OOM kill) with runc and with exprun, and the two
# agree. Its systemd-driver checks, printed one per line as
# `ok|FAILED [kernel|unit] WHAT`, for each handler:
#   kernel: the init of each running container (sandbox, worker) is in
#           /<slice>/cri-containerd-<id>.scope; the worker's memory.max and
#           cpu.max are its limits (at creation, after UpdateContainerResources);
#           each container's cgroup is gone once its pod is removed;
#   unit:   cri-containerd-<id>.scope is active, delegated, and its ControlGroup
#           is that cgroup; its MemoryMax and CPUQuotaPerSecUSec are the limits;
#           the unit is gone once the pod is removed.
# runc must pass all of them, exprun the kernel ones, and the unit ones where
# `exprun features` says linux.cgroup.systemd (it does); where it says not,
# they must fail (printed as expected failures): features must not under-claim.
# Afterwards no scope or slice unit, cgroup, mount or process of it is left.
# test-binary: containerd_cri
# timeout: 900
. "$GUEST_LIB"

bin=$GUEST_SHARE/tests/containerd_cri
[ -x "$bin" ] || fail "no containerd_cri test binary on the share"
for t in containerd containerd-shim-runc-v2 ctr runc systemctl; do
  command -v "$t" > /dev/null || fail "$t not installed"
done

# The test binary, away from its build: exprun and the fixtures from the share;
# its waits stretched for TCG; CI=true so that it cannot skip.
code=0
EXPRUN_TEST_BIN=/usr/local/bin/exprun EXPRUN_TEST_FIXTURES=$GUEST_SHARE \
  EXPRUN_CRI_SYSTEMD_CGROUP=1 EXPRUN_TEST_TIME_SCALE=6 CI=true \
  "$bin" --exact a_pod_lifecycle_through_cri_with_exprun_matches_runc --nocapture --test-threads=1 || code=$?
expect_eq "containerd_cri with SystemdCgroup = true" "$code" 0

units=$(systemctl list-units --all --plain --no-legend 'cri-containerd-*' 'exprun_e2e_*' \
  | awk '$3 != "inactive" { print $1 " " $3 }')
[ -z "$units" ] || fail "units left: $units"
left=$(ls -d /sys/fs/cgroup/exprun_e2e_* 2>/dev/null || true)
[ -z "$left" ] || fail "cgroups left: $left"
if grep -q exprun-containerd- /proc/self/mountinfo; then
  fail "mounts left: $(grep exprun-containerd- /proc/self/mountinfo)"
fi
for c in /proc/[0-9]*/cmdline; do
  cmd=$(tr '\0' ' ' < "$c" 2>/dev/null || true)
  case "$cmd" in
    *exprun-containerd-*) fail "process left: $cmd" ;;
  esac
done
ok "no unit, cgroup, mount or process left"
