# The memory reservation and swap of linux.resources on cgroup v2, in the
# kernel's files while a bundle's container runs, beside runc's for the same
# bundle: reservation -> memory.low, swap -> memory.swap.max = swap - limit;
# update's --memory-swap and --memory-reservation change them as runc's do.
# What v2 has no file for (swappiness, disableOOMKiller, net_cls, net_prio) is
# refused naming the field; rdma goes to rdma.max, which takes only devices
# the kernel has. Nothing is left when it is deleted.
. "$GUEST_LIB"
fresh_root
busybox_bundle
cp "$B/config.json" "$B/config.orig"
RUNC_ROOT="$ROOT/runc-state"

# The bundle asking for these resources, in cgroup $2; its /dev without nodev,
# where runc reopens /dev/null.
bundle() {
  jq --arg cg "$GUEST_CGROUP_PARENT/$2" --argjson r "$1" \
    '.process.args = ["sleep", "600"] | .process.terminal = false | .linux.cgroupsPath = $cg
     | .linux.resources = $r
     | .mounts |= map(if .destination == "/dev" then .options -= ["nodev"] else . end)' \
    "$B/config.orig" > "$B/config.json"
}

# memory.max, memory.swap.max and memory.low of cgroup $1.
memory_files() { echo "$(cat "$1/memory.max") $(cat "$1/memory.swap.max") $(cat "$1/memory.low")"; }

MEM='{"memory": {"limit": 67108864, "swap": 100663296, "reservation": 33554432}}'
ON_EXIT='xr delete --force res > /dev/null 2>&1; runc --root "$RUNC_ROOT" delete --force res-runc > /dev/null 2>&1'
bundle "$MEM" res-case
xr create -b "$B" res > "$B/create.log" 2>&1 < /dev/null || fail "create: $(cat "$B/create.log")"
xr start res
pid=$(xr state res | jq -r .pid)
CG=$(cgroup_of "$pid")
expect_eq "cgroup" "$CG" "/sys/fs/cgroup$GUEST_CGROUP_PARENT/res-case"
expect_eq "memory.max swap.max low" "$(memory_files "$CG")" "67108864 33554432 33554432"

bundle "$MEM" res-runc-case
runc --root "$RUNC_ROOT" create -b "$B" res-runc > "$B/runc.log" 2>&1 < /dev/null || fail "runc create: $(cat "$B/runc.log")"
runc --root "$RUNC_ROOT" start res-runc
RCG="/sys/fs/cgroup$GUEST_CGROUP_PARENT/res-runc-case"
expect_eq "runc's memory.max swap.max low" "$(memory_files "$RCG")" "$(memory_files "$CG")"

UPDATE="--memory 134217728 --memory-swap 268435456 --memory-reservation 16777216"
xr update $UPDATE res || fail "update $UPDATE"
runc --root "$RUNC_ROOT" update $UPDATE res-runc || fail "runc update $UPDATE"
expect_eq "after update" "$(memory_files "$CG")" "134217728 134217728 16777216"
expect_eq "runc after update" "$(memory_files "$RCG")" "$(memory_files "$CG")"
xr update --memory-swap -1 res || fail "update --memory-swap -1"
expect_eq "memory.swap.max after --memory-swap -1" "$(cat "$CG/memory.swap.max")" max
code=0
out=$(xr update --memory-swap 1048576 res 2>&1) || code=$?
expect_eq "exit status for swap below the limit" "$code" 125
case $out in *memory*swap*"less than the memory limit"*) ok "refused: $out" ;; *) fail "refusal: $out" ;; esac

xr delete --force res
runc --root "$RUNC_ROOT" delete --force res-runc
ON_EXIT=
[ ! -e "$CG" ] || fail "cgroup left behind: $CG"
[ ! -e "$RCG" ] || fail "runc's cgroup left behind: $RCG"

for r in '{"memory": {"swappiness": 10}}|linux.resources.memory.swappiness' \
         '{"memory": {"disableOOMKiller": true}}|linux.resources.memory.disableOOMKiller' \
         '{"network": {"classID": 7}}|linux.resources.network.classID' \
         '{"network": {"priorities": [{"name": "lo", "priority": 1}]}}|linux.resources.network.priorities'; do
  bundle "${r%%|*}" res-refused
  code=0
  out=$(xr create -b "$B" refused 2>&1 < /dev/null) || code=$?
  expect_eq "exit status for ${r#*|}" "$code" 125
  case $out in *"${r#*|}"*"cgroup v2"*) ok "refused: $out" ;; *) fail "refusal of ${r#*|}: $out" ;; esac
done

# The kernel knows no such RDMA device: the write fails naming the field (or,
# where the rdma controller does not reach the cgroup, the plan refuses it).
bundle '{"rdma": {"exprun-no-such-hca": {"hcaHandles": 2}}}' res-rdma
code=0
out=$(xr create -b "$B" rdma 2>&1 < /dev/null) || code=$?
[ "$code" != 0 ] || fail "an rdma limit for a missing device was accepted"
case $out in *linux.resources.rdma*|*"rdma controller"*) ok "rdma: $out" ;; *) fail "rdma: $out" ;; esac
xr delete --force rdma > /dev/null 2>&1 || true
rmdir "/sys/fs/cgroup$GUEST_CGROUP_PARENT/res-rdma" 2>/dev/null || true
assert_no_leftovers
