# A hostile bundle's `linux.resources.unified` on a cgroup v2 host: keys that
# would move processes, change the hierarchy or climb out of the container's
# cgroup are refused naming the field, before anything is made, and nothing
# on the host changed (pid 1's cgroup, the root's controllers, no cgroup left).
. "$GUEST_LIB"
fresh_root
busybox_bundle
pid1_before=$(cat /proc/1/cgroup)
root_before=$(cat /sys/fs/cgroup/cgroup.subtree_control)
parent=/sys/fs/cgroup$GUEST_CGROUP_PARENT
parent_before=$(cat "$parent/cgroup.subtree_control")
for attack in '{"cgroup.procs": "1"}' '{"cgroup.subtree_control": "-memory"}' \
  '{"../cgroup.procs": "1"}' '{"memory.max/../../cgroup.procs": "1"}' '{"/sys/fs/cgroup/cgroup.procs": "1"}' \
  '{"cgroup.kill": "1"}' '{"": "1"}' '{"memory": "1"}'; do
  jq --argjson u "$attack" --arg cg "$GUEST_CGROUP_PARENT/attack" \
    '.process.args = ["true"] | .process.terminal = false | .linux.cgroupsPath = $cg
     | .linux.resources.unified = $u' "$B/config.json" > "$B/config.new"
  mv "$B/config.new" "$B/config.json"
  set +e
  err=$(xr run -b "$B" attack 2>&1)
  code=$?
  set -e
  expect_eq "exit code for unified $attack" "$code" 125
  case "$err" in
    *linux.resources.unified*) ok "refused: $err" ;;
    *) fail "unified $attack: the error does not name the field: $err" ;;
  esac
  [ ! -e "$parent/attack" ] || fail "unified $attack left $parent/attack"
done
expect_eq "pid 1's cgroup" "$(cat /proc/1/cgroup)" "$pid1_before"
expect_eq "the root's subtree_control" "$(cat /sys/fs/cgroup/cgroup.subtree_control)" "$root_before"
expect_eq "the parent's subtree_control" "$(cat "$parent/cgroup.subtree_control")" "$parent_before"
assert_no_leftovers
