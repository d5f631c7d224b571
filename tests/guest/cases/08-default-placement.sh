# `exprun run` as root with no --cgroup-parent, from a systemd service's
# cgroup (which holds processes, so cgroup v2 lets it hand no controller to a
# child): the run goes under /exprun, its limits apply, and its cgroup goes
# when it ends.
. "$GUEST_LIB"
fresh_root
out=$(xr run --memory 64m --pids-limit 20 busybox:latest sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max')
expect_eq "memory.max and pids.max inside" "$(echo $out)" "67108864 20"
dir=$(record .cgroup.dirs.unified)
case "$dir" in
  /sys/fs/cgroup/exprun/?*) ok "cgroup $dir" ;;
  *) fail "cgroup $dir is not below /sys/fs/cgroup/exprun" ;;
esac
[ ! -e "$dir" ] || fail "cgroup left behind: $dir"
expect_eq "children of /sys/fs/cgroup/exprun" "$(find /sys/fs/cgroup/exprun -mindepth 1 -type d | wc -l)" 0
assert_no_leftovers
