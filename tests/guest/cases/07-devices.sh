# Device rules on pure cgroup v2: a cgroup device BPF program built from
# linux.resources.devices. A bundle with CAP_MKNOD, a /dev without nodev and
# the guest's disk given as a device node: deny-all refuses opening it and
# making another (EPERM) while /dev/null works; allow-all opens both. An
# `exprun run` (deny by default) cannot make a disk node either, and one given
# with `--device DISK:/dev/xdisk:r` opens for reading only.
. "$GUEST_LIB"
fresh_root
disk_numbers
busybox_bundle
script="exec 2>&1; true < /dev/xdisk && echo given-opened; mknod /dev/made b $MAJ $MIN && echo made; \
true < /dev/made && echo made-opened; echo x > /dev/null && echo null-works"

# The bundle with these device rules.
bundle() {
  jq --arg cg "$GUEST_CGROUP_PARENT/dev-case" --arg s "$script" \
    --argjson maj "$MAJ" --argjson min "$MIN" --argjson rules "$1" '
    .process.args = ["sh", "-c", $s] | .process.terminal = false | .linux.cgroupsPath = $cg
    | (.mounts[] | select(.destination == "/dev") | .options) = ["nosuid", "strictatime", "mode=755", "size=65536k"]
    | .linux.devices = [{"path": "/dev/xdisk", "type": "b", "major": $maj, "minor": $min,
                         "fileMode": 384, "uid": 0, "gid": 0}]
    | .linux.resources.devices = $rules' "$B/config.json" > "$B/config.new"
  mv "$B/config.new" "$B/config.json"
}

bundle '[{"allow": false, "access": "rwm"}]'
out=$(cd "$B" && xr run --bundle . dev-deny)
echo "$out"
# A line of its own, as the script echoes it (the errors name /dev/made too).
has() { printf '%s\n' "$out" | grep -qx "$1"; }
for bad in given-opened made made-opened; do
  ! has "$bad" || fail "deny-all: $bad: $out"
done
has null-works && ok "deny-all: /dev/null still works" || fail "deny-all: /dev/null refused: $out"
case $out in *"Operation not permitted"*) ok "deny-all: EPERM" ;; *) fail "deny-all: no EPERM: $out" ;; esac

bundle '[{"allow": true, "access": "rwm"}]'
out=$(cd "$B" && xr run --bundle . dev-allow)
echo "$out"
for want in given-opened made made-opened null-works; do
  has "$want" && ok "allow-all: $want" || fail "allow-all: no $want: $out"
done

out=$(xrun busybox:latest sh -c "mknod /dev/d b $MAJ $MIN && echo made" 2>&1 || true)
echo "$out"
! has made || fail "exprun run made a disk node: $out"
case $out in *"Operation not permitted"*) ok "exprun run: mknod of the disk refused" ;; *) fail "exprun run: $out" ;; esac

# exprun run --device: the program lets the given nodes through with their
# PERMS (the disk read-only) and nothing else (no mknod of it).
out=$(xrun --device /dev/null:/dev/fakegpu0 --device "/dev/vda:/dev/xdisk:r" busybox:latest sh -c \
  "exec 2>&1; echo x > /dev/fakegpu0 && echo wrote-fake; true < /dev/xdisk && echo read-disk; \
   true > /dev/xdisk && echo wrote-disk; mknod /dev/m b $MAJ $MIN && echo made-disk; echo end" || true)
echo "$out"
for want in wrote-fake read-disk end; do
  has "$want" && ok "run --device: $want" || fail "run --device: no $want: $out"
done
for bad in wrote-disk made-disk; do
  ! has "$bad" || fail "run --device: $bad: $out"
done

expect_eq "features" "$(exprun features | jq -r '.annotations["dev.exprun.devices"]')" \
  "enforced by the cgroup v2 device BPF program"
assert_no_leftovers
