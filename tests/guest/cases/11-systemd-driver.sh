# The systemd cgroup driver (--systemd-cgroup, containerd's SystemdCgroup =
# true): the bundle's `slice:prefix:name` becomes a transient scope unit that
# systemd made and holds the container's processes alone, with the limits as
# unit properties as well as the kernel's files; update changes both, a
# daemon-reload keeps them, and delete leaves no unit and no cgroup.
. "$GUEST_LIB"
fresh_root
busybox_bundle
UNIT=exprun-case11.scope
jq '.process.args = ["sleep", "600"] | .process.terminal = false
    | .linux.cgroupsPath = "exprun_guest.slice:exprun:case11"
    | .linux.resources.memory.limit = 67108864 | .linux.resources.pids.limit = 20
    | .linux.resources.cpu.quota = 50000 | .linux.resources.cpu.period = 100000' \
  "$B/config.json" > "$B/config.new"
mv "$B/config.new" "$B/config.json"

ON_EXIT='xr delete --force ctr > /dev/null 2>&1; systemctl stop exprun_guest.slice > /dev/null 2>&1'
xr --systemd-cgroup create -b "$B" ctr > "$B/create.log" 2>&1 || fail "create: $(cat "$B/create.log")"
xr --systemd-cgroup start ctr
pid=$(xr state ctr | jq -r .pid)
CG=$(cgroup_of "$pid")
expect_eq "cgroup" "$CG" /sys/fs/cgroup/exprun_guest.slice/$UNIT
show() { systemctl show "$UNIT" -p "$1" --value; }
# unit_gone UNIT: systemd has stopped and collected UNIT (within 5 s).
unit_gone() {
  i=0
  while [ "$(systemctl show "$1" -p LoadState --value)" != not-found ]; do
    i=$((i + 1))
    [ $i -lt 50 ] || fail "$1 is still loaded: $(systemctl status "$1" 2>&1 | head -5)"
    sleep 0.1
  done
  ok "$1 is gone"
}
expect_eq "the unit's state" "$(show ActiveState)" active
expect_eq "the unit's cgroup" "/sys/fs/cgroup$(show ControlGroup)" "$CG"
expect_eq "the unit's Delegate" "$(show Delegate)" yes
expect_eq "processes in the scope (exprun has left)" "$(cat "$CG/cgroup.procs")" "$pid"
expect_eq "MemoryMax" "$(show MemoryMax)" 67108864
expect_eq "memory.max" "$(cat "$CG/memory.max")" 67108864
expect_eq "TasksMax" "$(show TasksMax)" 20
expect_eq "pids.max" "$(cat "$CG/pids.max")" 20
expect_eq "CPUQuotaPerSecUSec" "$(show CPUQuotaPerSecUSec)" 500ms
expect_eq "cpu.max" "$(cat "$CG/cpu.max")" "50000 100000"

xr --systemd-cgroup update --memory 134217728 --pids-limit 30 ctr
expect_eq "MemoryMax after update" "$(show MemoryMax)" 134217728
expect_eq "TasksMax after update" "$(show TasksMax)" 30
# systemd writes its units' properties into their cgroups again on a reload:
# limits written only into the files would be undone here.
systemctl daemon-reload
expect_eq "memory.max after update and daemon-reload" "$(cat "$CG/memory.max")" 134217728
expect_eq "pids.max after update and daemon-reload" "$(cat "$CG/pids.max")" 30

xr --systemd-cgroup pause ctr
expect_eq "cgroup.freeze after pause" "$(cat "$CG/cgroup.freeze")" 1
xr --systemd-cgroup resume ctr

kill_and_wait_stopped ctr --systemd-cgroup
xr --systemd-cgroup delete ctr
unit_gone "$UNIT"
[ ! -e "$CG" ] || fail "cgroup left behind: $CG"
ON_EXIT='systemctl stop exprun_guest.slice > /dev/null 2>&1'

# An OOM kill fails the scope; it is collected all the same.
jq '.process.args = ["sh", "-c", "tail /dev/zero"] | .linux.cgroupsPath = "exprun_guest.slice:exprun:oom"
    | .linux.resources.memory.limit = 33554432' "$B/config.json" > "$B/config.new"
mv "$B/config.new" "$B/config.json"
set +e
xr --systemd-cgroup run -b "$B" oom > /dev/null 2>&1
code=$?
set -e
expect_eq "exit code of the OOM run" "$code" 137
unit_gone exprun-oom.scope

# A command that cannot start: create fails with exprun's own error (not
# killed by its own clean-up while it is in the scope), and nothing is left.
jq '.process.args = ["/no/such/command"] | .linux.cgroupsPath = "exprun_guest.slice:exprun:nocmd"' \
  "$B/config.json" > "$B/config.new"
mv "$B/config.new" "$B/config.json"
set +e
err=$(xr --systemd-cgroup create -b "$B" nocmd 2>&1)
code=$?
set -e
[ "$code" -ne 0 ] && [ "$code" -ne 137 ] || fail "create of a missing command exited $code: $err"
ok "create of a missing command failed with $code: $err"
unit_gone exprun-nocmd.scope
[ ! -e /sys/fs/cgroup/exprun_guest.slice/exprun-nocmd.scope ] || fail "its cgroup was left"

# Without systemd's answer nothing is made: a bad slice name is refused first.
jq '.linux.cgroupsPath = "exprun_guest.slice:exprun:../x"' "$B/config.json" > "$B/config.new"
mv "$B/config.new" "$B/config.json"
set +e
err=$(xr --systemd-cgroup create -b "$B" bad 2>&1)
code=$?
set -e
expect_eq "exit code for a bad cgroupsPath" "$code" 125
case "$err" in *linux.cgroupsPath*) ok "refused: $err" ;; *) fail "unexpected error: $err" ;; esac
systemctl stop exprun_guest.slice
assert_no_leftovers
