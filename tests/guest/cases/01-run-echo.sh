# exprun runs busybox under systemd on pure cgroup v2, in a cgroup of its own,
# and leaves no cgroup, mount or process behind.
. "$GUEST_LIB"
fresh_root
out=$(xrun busybox:latest echo hello-from-the-guest)
expect_eq "output" "$out" hello-from-the-guest
expect_eq "exit code in the record" "$(record .exit.code)" 0
expect_eq "cgroup version in the record" "$(record .cgroup.version)" v2
dir=$(record .cgroup.dirs.unified)
case "$dir" in
  "/sys/fs/cgroup$GUEST_CGROUP_PARENT"/?*) ok "cgroup $dir" ;;
  *) fail "cgroup $dir is not below /sys/fs/cgroup$GUEST_CGROUP_PARENT" ;;
esac
assert_no_leftovers
