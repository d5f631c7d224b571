#!/usr/bin/env bash
# Where a run's time goes: each step of `exprun run IMAGE -- /bin/true`
# (from `exprun --debug`) beside the kernel's floor for that step
# (scripts/floor/probe.c: the same syscalls and nothing else), interleaved
# round by round. docs/benchmarks.md has the table and how to read it.
#
# Usage: bash scripts/bench-steps.sh [--rounds N] [--json FILE]
# Environment: EXPRUN_BIN  exprun binary to use as is (default: the static-pie
#   release build of scripts/build-release.sh).
# Needs root and gcc. Everything it makes lives in one temp dir, removed on
# every exit path.
set -euo pipefail

ROUNDS=40
JSON_OUT=''
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
log() { printf 'bench-steps: %s\n' "$*" >&2; }
die() { printf 'bench-steps: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --rounds) [ $# -ge 2 ] || die "--rounds needs a number"; ROUNDS=$2; shift ;;
        --json) [ $# -ge 2 ] || die "--json needs a file"; JSON_OUT=$(realpath -m "$2"); shift ;;
        -h|--help) sed -n '7,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
    shift
done
case $ROUNDS in ''|*[!0-9]*|0) die "--rounds wants a positive integer, got '$ROUNDS'" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root (the probe mounts and makes cgroups)"
command -v gcc >/dev/null || die "gcc not found (apt-get install gcc)"

if [ -z "${EXPRUN_BIN:-}" ]; then
    log "scripts/build-release.sh (static-pie release build)"
    EXPRUN_BIN=$(bash "$REPO/scripts/build-release.sh")
fi
[ -x "$EXPRUN_BIN" ] || die "exprun binary not found: $EXPRUN_BIN"
EXPRUN_BIN=$(realpath "$EXPRUN_BIN")
bash "$REPO/rootfs-fixtures/build.sh" >/dev/null 2>&1 || die "rootfs-fixtures/build.sh failed"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/exprun-steps.XXXXXX")
cleanup() {
    trap - EXIT INT TERM HUP
    set +e
    "$EXPRUN_BIN" --root "$TMP/root" gc >/dev/null 2>&1
    awk -v t="$TMP" 'index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while IFS= read -r m; do umount -l "$m"; done
    find /sys/fs/cgroup -maxdepth 4 -type d -name "exprun-floor-$$-*" -delete 2>/dev/null
    rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT INT TERM HUP

gcc -O2 -Wall -static -o "$TMP/probe" "$REPO/scripts/floor/probe.c"
"$EXPRUN_BIN" --root "$TMP/root" image import "$REPO/rootfs-fixtures/out/busybox-oci.tar" >/dev/null
IMAGE=busybox-oci:latest
# The probe's overlay lower layers: the image's unpacked layers in the store
# (their order does not matter to /bin/true).
LOWER=$(ls -d "$TMP"/root/store/layers/* | paste -sd:)
mkdir "$TMP/state"

cat <<INFO
exprun per-step cost against the kernel's floor
date:    $(date -u +%FT%TZ)
kernel:  $(uname -r)
load:    $(cut -d' ' -f1-3 /proc/loadavg)
exprun:  $("$EXPRUN_BIN" --version) ($EXPRUN_BIN)
probe:   scripts/floor/probe.c (gcc -O2 -static)
INFO
python3 "$REPO/scripts/bench_steps.py" --exprun "$EXPRUN_BIN" --root "$TMP/root" --image "$IMAGE" \
    --probe "$TMP/probe" --lower "$LOWER" --state "$TMP/state" --rounds "$ROUNDS" \
    ${JSON_OUT:+--json "$JSON_OUT"}
