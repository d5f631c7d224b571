# The guest is the host the other cases claim: systemd as pid 1, the unified
# cgroup v2 hierarchy alone, the controllers the cases check, a lingering
# systemd user manager for the test user, and the OCI tools.
. "$GUEST_LIB"
expect_eq "pid 1" "$(cat /proc/1/comm)" systemd
expect_eq "/sys/fs/cgroup type" "$(stat -f -c %T /sys/fs/cgroup)" cgroup2fs
if grep -q ' cgroup ' /proc/self/mounts; then fail "a cgroup v1 hierarchy is mounted"; fi
for c in cpuset cpu io memory pids; do
  grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || fail "controller $c missing: $(cat /sys/fs/cgroup/cgroup.controllers)"
done
ok "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
expect_eq "user@1000.service" "$(systemctl is-active user@1000.service)" active
for t in containerd runc newuidmap newgidmap; do
  command -v "$t" > /dev/null || fail "$t not installed"
done
ok "containerd, runc, uidmap installed"
