# A rootless run with limits and no wrapper: as the test user, outside any
# delegated cgroup (a root-owned scope, like a login session's), `exprun run
# --memory --pids-limit --cpus` asks the user's systemd manager for a scope of
# its own; the kernel enforces the limits (OOM and fork storm), and the scope
# is gone when the run is.
. "$GUEST_LIB"
H=$(mktemp -d /var/tmp/exprun-guest-tester.XXXXXX)
chown tester: "$H"
CLEANUP="$CLEANUP $H"
ROOT=$H/root
# A root-owned scope, as sshd's session-N.scope is: nothing delegated to tester.
as_tester() {
  systemd-run --scope --quiet --uid=tester --setenv=XDG_RUNTIME_DIR=/run/user/1000 \
    --setenv=HOME="$H" --setenv=PATH="$PATH" -- "$@"
}
as_tester exprun --root "$ROOT" image import --name busybox:latest "$GUEST_SHARE/busybox-oci" > /dev/null

SYNC=$(mktemp -d /var/tmp/exprun-guest-sync.XXXXXX)
chown tester: "$SYNC"
as_tester exprun --root "$ROOT" run -v "$SYNC:/sync" --memory 256m --pids-limit 50 --cpus 1 \
  busybox:latest sh -c 'while [ ! -e /sync/go ]; do sleep 1; done # wait-own-scope' &
WAITING=$!
pid=$(wait_for_pid "^sh -c while .*# wait-own-scope" "$WAITING")
CG=$(cgroup_of "$pid")
case "$CG" in
  /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/exprun-*.scope/exprun-*)
    ok "cgroup $CG" ;;
  *) fail "cgroup $CG is not in a scope of the user's manager" ;;
esac
SCOPE=$(dirname "$CG")
unit=$(basename "$SCOPE")
state=$(runuser -u tester -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user show "$unit" -p ActiveState --value)
expect_eq "the scope unit's state" "$state" active
expect_eq "owner of the cgroup" "$(stat -c %U "$CG")" tester
expect_eq "memory.max" "$(cat "$CG/memory.max")" 268435456
expect_eq "pids.max" "$(cat "$CG/pids.max")" 50
expect_eq "cpu.max" "$(cat "$CG/cpu.max")" "100000 100000"
supervised=
for p in $(cat "$SCOPE/supervisor/cgroup.procs"); do
  [ "$(cat "/proc/$p/comm")" != exprun ] || supervised=$p
done
[ -n "$supervised" ] || fail "exprun is not in $SCOPE/supervisor"
ok "exprun supervises the run from $SCOPE/supervisor"
finish_waiting
i=0
while [ -e "$SCOPE" ]; do
  i=$((i + 1))
  [ $i -lt 50 ] || fail "the scope outlived the run: $SCOPE"
  sleep 0.1
done
ok "the scope went with the run"

set +e
as_tester exprun --root "$ROOT" run --memory 32m busybox:latest sh -c 'tail /dev/zero'
code=$?
set -e
expect_eq "exit code of the OOM run" "$code" 137
expect_eq "exit.oom_killed" "$(record .exit.oom_killed)" true

out=$(as_tester exprun --root "$ROOT" run --pids-limit 10 busybox:latest sh -c '
  i=0; while [ $i -lt 50 ]; do (sleep 60 &) 2>/dev/null || true; i=$((i + 1)); done
  set -- /proc/[0-9]*; echo "procs=$#"')
n=${out#procs=}
[ "$n" -le 10 ] || fail "$n processes ran under a pids limit of 10"
ok "fork storm stopped at $n processes"
assert_no_leftovers
