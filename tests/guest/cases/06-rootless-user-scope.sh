# As the test user, in a scope of the user's own systemd manager
# (`systemd-run --user --scope`, a delegated subtree): a rootless run gets a
# cgroup beside exprun's scope, the kernel enforces its --memory and
# --pids-limit, and an OOM run is recorded as such.
. "$GUEST_LIB"
H=$(mktemp -d /var/tmp/exprun-guest-tester.XXXXXX)
chown tester: "$H"
CLEANUP="$CLEANUP $H"
ROOT=$H/root
as_tester() {
  runuser -u tester -- env -i PATH="$PATH" HOME="$H" XDG_RUNTIME_DIR=/run/user/1000 \
    DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus "$@"
}
as_tester exprun --root "$ROOT" image import --name busybox:latest "$GUEST_SHARE/busybox-oci" > /dev/null

SYNC=$(mktemp -d /var/tmp/exprun-guest-sync.XXXXXX)
chown tester: "$SYNC"
as_tester systemd-run --user --scope --quiet exprun --root "$ROOT" run -v "$SYNC:/sync" \
  --memory 64m --pids-limit 20 busybox:latest \
  sh -c 'while [ ! -e /sync/go ]; do sleep 1; done # wait-rootless' &
WAITING=$!
pid=$(wait_for_pid "^sh -c while .*# wait-rootless" "$WAITING")
CG=$(cgroup_of "$pid")
case "$CG" in
  /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/*) ok "cgroup $CG" ;;
  *) fail "cgroup $CG is not in the user's delegated subtree" ;;
esac
expect_eq "owner of the cgroup" "$(stat -c %U "$CG")" tester
expect_eq "memory.max" "$(cat "$CG/memory.max")" 67108864
expect_eq "pids.max" "$(cat "$CG/pids.max")" 20
finish_waiting

set +e
as_tester systemd-run --user --scope --quiet exprun --root "$ROOT" run --memory 32m \
  busybox:latest sh -c 'tail /dev/zero'
code=$?
set -e
expect_eq "exit code of the OOM run" "$code" 137
expect_eq "exit.oom_killed" "$(record .exit.oom_killed)" true
assert_no_leftovers
