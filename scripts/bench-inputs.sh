#!/usr/bin/env bash
# Input digest benchmark: how long exprun takes to digest an --input, first run
# (empty digest cache) and second run (inputs unchanged), side by side with
# sha256sum and b3sum over the same files (find | xargs -P$(nproc)).
#
# Usage: bash scripts/bench-inputs.sh [--small N] [--big N] [--keep-going]
#   --big N     files of 1 MiB in the large data set (default 2000: 2 GiB)
#   --small N   files of 1 to 4 KiB in the small-files set (default 100000)
#
# Environment: EXPRUN_BIN  the exprun binary (default: target/release/exprun if
#   built, else target/debug/exprun; say which when quoting figures).
#   B3SUM  the b3sum binary; when missing, `cargo install b3sum --locked` into
#   ${XDG_CACHE_HOME:-~/.cache}/exprun-bench/b3sum (said on stderr).
#
# exprun has no digest-only command: its time is that of
#   exprun run --input DIR:/data busybox:latest true
# minus the median of three plain `exprun run busybox:latest true`.
# "first" runs on a fresh state root (no digest cache) after the page cache is
# dropped (echo 3 > /proc/sys/vm/drop_caches) when that is allowed, else warm
# (said in the table); "second" is the next run, caches warm. The data is made
# 2.5 s before the first run, so that the cache may trust its entries (see
# docs/gpus-and-data.md, "racily clean"). Needs root (exprun run). Everything
# it makes lives in one temp dir, removed on every exit path.
set -euo pipefail

BIG=2000
SMALL=100000
while [ $# -gt 0 ]; do
    case $1 in
        --big) BIG=$2; shift ;;
        --small) SMALL=$2; shift ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-inputs: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
log() { printf 'bench-inputs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (exprun run)"
command -v python3 >/dev/null || die "needs python3 (to make the data)"

TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [ -z "${EXPRUN_BIN:-}" ]; then
    for b in "$TARGET/release/exprun" "$TARGET/debug/exprun"; do
        [ -x "$b" ] && { EXPRUN_BIN=$b; break; }
    done
fi
[ -x "${EXPRUN_BIN:-}" ] || die "no exprun binary: build one or set EXPRUN_BIN"

if [ -z "${B3SUM:-}" ]; then
    if command -v b3sum >/dev/null; then
        B3SUM=$(command -v b3sum)
    else
        priv=${XDG_CACHE_HOME:-$HOME/.cache}/exprun-bench/b3sum
        if [ ! -x "$priv/bin/b3sum" ]; then
            log "b3sum missing: cargo install b3sum --locked --root $priv"
            cargo install b3sum --locked --root "$priv" >&2 || die "could not install b3sum"
        fi
        B3SUM=$priv/bin/b3sum
        log "b3sum: $B3SUM (installed privately by this script, not on PATH)"
    fi
fi

FIXTURE=$REPO/rootfs-fixtures/out/busybox-oci
[ -f "$FIXTURE/index.json" ] || bash "$REPO/rootfs-fixtures/build.sh" >&2

TMP=$(mktemp -d /tmp/exprun-bench-inputs.XXXXXX)
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

NPROC=$(nproc)
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

COLD=warm
drop_caches() {
    sync
    if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then COLD=cold; else COLD=warm; fi
}

log "making the data in $TMP"
python3 - "$TMP" "$BIG" "$SMALL" <<'EOF'
import os, sys
root, big, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(1 << 20)
os.makedirs(f"{root}/big")
for i in range(big):
    d = f"{root}/big/{i % 20:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/shard-{i:05d}.bin", "wb") as f:
        # Each file its own content: the first bytes differ.
        f.write(i.to_bytes(8, "little") + block[8:])
os.makedirs(f"{root}/small")
for i in range(small):
    d = f"{root}/small/{i % 100:03d}"
    if i < 100:
        os.makedirs(d)
    with open(f"{d}/item-{i:06d}.txt", "wb") as f:
        f.write(os.urandom(1024 + (i * 997) % 3072))
EOF
sleep 2.5

run_exprun() { # state-root data-dir
    local s e
    s=$(now)
    if [ -n "$2" ]; then
        "$EXPRUN_BIN" --root "$1" run --input "$2:/data" busybox:latest true >/dev/null 2>"$TMP/err" \
            || { cat "$TMP/err" >&2; die "exprun run failed"; }
    else
        "$EXPRUN_BIN" --root "$1" run busybox:latest true >/dev/null 2>"$TMP/err" \
            || { cat "$TMP/err" >&2; die "exprun run failed"; }
    fi
    e=$(now)
    secs "$s" "$e"
}

median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
minus() { python3 -c "import sys; print(f'{max(0.0, float(sys.argv[1]) - float(sys.argv[2])):.3f}')" "$1" "$2"; }

time_tool() { # tool-command... ; times it over every file of $DATA
    local s e
    s=$(now)
    find "$DATA" -type f -print0 | xargs -0 -P"$NPROC" -n 256 "$@" >/dev/null
    e=$(now)
    secs "$s" "$e"
}

printf 'exprun input digest benchmark\n'
printf 'date:    %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf 'kernel:  %s\n' "$(uname -r)"
printf 'cpus:    %s (%s)\n' "$NPROC" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf 'load:    %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'exprun:  %s (%s)\n' "$EXPRUN_BIN" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
printf 'b3sum:   %s\n' "$("$B3SUM" --version)"
printf 'exprun time = exprun run --input DIR:/data busybox:latest true, minus a plain run (median of 3)\n\n'
printf '%-22s %-10s %12s %12s\n' "data set" "tool" "first s" "second s"

for set in big small; do
    DATA=$TMP/$set
    files=$(find "$DATA" -type f | wc -l)
    bytes=$(du -sb "$DATA" | cut -f1)
    label="$files files, $((bytes >> 20)) MiB"
    root=$TMP/root-$set
    "$EXPRUN_BIN" --root "$root" image import --name busybox:latest "$FIXTURE" >/dev/null
    plain=$(median3 "$(run_exprun "$root" "")" "$(run_exprun "$root" "")" "$(run_exprun "$root" "")")
    drop_caches
    first_run=$(run_exprun "$root" "$DATA")
    second_run=$(run_exprun "$root" "$DATA")
    first=$(minus "$first_run" "$plain")
    second=$(minus "$second_run" "$plain")
    printf '%-22s %-10s %12s %12s   (%s page cache first; whole runs %s and %s s, plain run %s s)\n' \
        "$label" exprun "$first" "$second" "$COLD" "$first_run" "$second_run" "$plain"
    drop_caches
    first=$(time_tool sha256sum)
    second=$(time_tool sha256sum)
    printf '%-22s %-10s %12s %12s   (%s page cache first)\n' "$label" sha256sum "$first" "$second" "$COLD"
    drop_caches
    first=$(time_tool "$B3SUM" --num-threads 1)
    second=$(time_tool "$B3SUM" --num-threads 1)
    printf '%-22s %-10s %12s %12s   (%s page cache first)\n' "$label" b3sum "$first" "$second" "$COLD"
done
