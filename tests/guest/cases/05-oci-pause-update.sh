# An OCI bundle's container (runc's verbs, as containerd's shim drives them):
# pause and resume through cgroup.freeze, update through memory.max, pids.max,
# cpu.max and cpu.weight, and delete leaves nothing behind.
. "$GUEST_LIB"
fresh_root
busybox_bundle
jq --arg cg "$GUEST_CGROUP_PARENT/oci-case" \
  '.process.args = ["sleep", "600"] | .process.terminal = false | .linux.cgroupsPath = $cg' \
  "$B/config.json" > "$B/config.new"
mv "$B/config.new" "$B/config.json"

ON_EXIT='xr delete --force ctr > /dev/null 2>&1'
xr create -b "$B" ctr > "$B/create.log" 2>&1 || fail "create: $(cat "$B/create.log")"
xr start ctr
pid=$(xr state ctr | jq -r .pid)
CG=$(cgroup_of "$pid")
expect_eq "cgroup" "$CG" "/sys/fs/cgroup$GUEST_CGROUP_PARENT/oci-case"

xr pause ctr
expect_eq "status after pause" "$(xr state ctr | jq -r .status)" paused
expect_eq "cgroup.freeze after pause" "$(cat "$CG/cgroup.freeze")" 1
expect_eq "frozen in cgroup.events" "$(sed -n 's/^frozen //p' "$CG/cgroup.events")" 1
xr resume ctr
expect_eq "status after resume" "$(xr state ctr | jq -r .status)" running
expect_eq "cgroup.freeze after resume" "$(cat "$CG/cgroup.freeze")" 0

xr update --memory 134217728 --pids-limit 30 --cpu-quota 25000 --cpu-period 100000 --cpu-share 512 ctr
expect_eq "memory.max after update" "$(cat "$CG/memory.max")" 134217728
expect_eq "pids.max after update" "$(cat "$CG/pids.max")" 30
expect_eq "cpu.max after update" "$(cat "$CG/cpu.max")" "25000 100000"
# 512 shares as runc and crun convert them: 1 + (512 - 2) * 9999 / 262142.
expect_eq "cpu.weight after update" "$(cat "$CG/cpu.weight")" 20

kill_and_wait_stopped ctr
xr delete ctr
[ ! -e "$CG" ] || fail "cgroup left behind: $CG"
assert_no_leftovers
