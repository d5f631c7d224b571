# The record's usage comes from the kernel's cpu.stat and memory.peak.
. "$GUEST_LIB"
fresh_root
xrun busybox:latest sh -c '
  i=0; while [ $i -lt 100000 ]; do i=$((i + 1)); done
  dd if=/dev/zero of=/dev/null bs=32M count=2 2>/dev/null'
user=$(record .usage.cpu_user_us)
peak=$(record .usage.peak_memory_bytes)
[ "$user" != null ] && [ "$user" -gt 0 ] || fail "usage.cpu_user_us is $user"
ok "usage.cpu_user_us = $user"
[ "$peak" != null ] && [ "$peak" -ge 33554432 ] || fail "usage.peak_memory_bytes is $peak, want >= 32 MiB"
ok "usage.peak_memory_bytes = $peak"
assert_no_leftovers
