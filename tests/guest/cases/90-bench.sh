# scripts/bench.sh in the guest: exprun run, exprun run -b, crun and runc on
# one busybox image, interleaved, on a systemd cgroup v2 host. Not part of the
# test run: scripts/bench-guest.sh runs it (TCG distorts absolute times; read
# the ratios). The results come back as out/bench.json.
# opt-in
# timeout: 3000
# share: scripts
# share: rootfs-fixtures
# share-bin: EXPRUN_BENCH_BIN exprun-release
. "$GUEST_LIB"
W=$(mktemp -d /var/tmp/exprun-bench.XXXXXX)
CLEANUP="$CLEANUP $W"
# bench.sh writes next to itself (rootfs-fixtures/out): a writable copy.
cp -a "$GUEST_SHARE/repo/." "$W/"
cp "$GUEST_SHARE/exprun-release" "$W/exprun"
# Under TCG every run is tens of times slower: bursts of 20, 3 times each.
EXPRUN_BIN=$W/exprun bash "$W/scripts/bench.sh" --runs 10 --burst 20 --burst-reps 3 \
  --json "$GUEST_SHARE/out/bench.json"
