#!/usr/bin/env bash
# scripts/bench.sh inside the Debian 12 guest of tests/guest.rs (systemd as
# pid 1, cgroup v2 only, Debian's runc and crun): the guest case 90-bench,
# which the test run leaves out. Builds the release exprun first. Under TCG
# (nested virtualisation) absolute times are distorted: read the ratios.
#
# Usage: bash scripts/bench-guest.sh        (as root; the guest image is built
# and cached as for cargo test --test guest)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(bash scripts/build-release.sh)
EXPRUN_BENCH_BIN=$bin EXPRUN_GUEST_CASES=90-bench EXPRUN_GUEST_LOGS=1 EXPRUN_GUEST_TIMEOUT=3600 \
    cargo test --test guest -- --nocapture
