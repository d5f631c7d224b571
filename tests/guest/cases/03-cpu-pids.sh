# --cpus is cpu.max and --pids-limit is pids.max, read while the container
# runs; a fork storm stops at the limit and the record counts the refusals.
. "$GUEST_LIB"
fresh_root
start_waiting cpu --cpus 0.5 --pids-limit 16
expect_eq "cpu.max" "$(cat "$CG/cpu.max")" "50000 100000"
expect_eq "pids.max" "$(cat "$CG/pids.max")" 16
finish_waiting

# 50 background sleeps against a limit of 10 (each from a subshell, whose
# failed fork does not end the loop); the count uses no fork.
out=$(xrun --pids-limit 10 busybox:latest sh -c '
  i=0; while [ $i -lt 50 ]; do (sleep 60 &) 2>/dev/null || true; i=$((i + 1)); done
  set -- /proc/[0-9]*; echo "procs=$#"')
n=${out#procs=}
[ "$n" -le 10 ] || fail "$n processes ran under a pids limit of 10"
ok "fork storm stopped at $n processes"
hits=$(record .usage.pids_limit_hits)
[ "$hits" -ge 1 ] || fail "usage.pids_limit_hits is $hits"
ok "usage.pids_limit_hits = $hits"
assert_no_leftovers
