# --memory is the kernel's memory.max (no swap on top: memory.swap.max 0), read
# while the container runs; a run past it is recorded as OOM-killed, from
# memory.events.
. "$GUEST_LIB"
fresh_root
start_waiting mem --memory 64m
expect_eq "memory.max" "$(cat "$CG/memory.max")" 67108864
expect_eq "memory.swap.max" "$(cat "$CG/memory.swap.max")" 0
finish_waiting

set +e
xrun --memory 32m busybox:latest sh -c 'tail /dev/zero'
code=$?
set -e
expect_eq "exit code of the OOM run" "$code" 137
expect_eq "exit.oom_killed" "$(record .exit.oom_killed)" true
kills=$(record .usage.oom_kills)
[ "$kills" -ge 1 ] || fail "usage.oom_kills is $kills"
ok "usage.oom_kills = $kills"
assert_no_leftovers
