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

xr --systemd-cgroup kill ctr KILL
i=0
while [ "$(xr state ctr | jq -r .status)" != stopped ]; do
  i=$((i + 1))
  [ $i -lt 100 ] || fail "the container did not stop after SIGKILL"
  sleep 0.2
done
xr --systemd-cgroup delete ctr
expect_eq "the unit after delete" "$(systemctl show "$UNIT" -p LoadState --value)" not-found
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
i=0
while [ "$(systemctl show exprun-oom.scope -p LoadState --value)" != not-found ]; do
  i=$((i + 1))
  [ $i -lt 50 ] || fail "exprun-oom.scope is still loaded: $(systemctl status exprun-oom.scope 2>&1 | head -5)"
  sleep 0.1
done
ok "the OOM-killed scope was collected"

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
