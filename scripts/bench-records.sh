#!/usr/bin/env bash
# Records at the scale of a sweep: what one plain `exprun run IMAGE true`
# adds to the state root, how long `exprun runs ls` takes over N runs, and
# what the fsync of a record costs. docs/benchmarks.md has the figures.
#
# Usage: bash scripts/bench-records.sh [N ...]   (default: 2000 100000)
# Environment: EXPRUN_BIN  the exprun binary (default: target/release/exprun)
#              EXPRUN_BASE another exprun binary to time `runs ls` against,
#                          interleaved round by round over the same runs (a
#                          release build of main): its median too, and the
#                          median of the per-round ratios EXPRUN_BIN/EXPRUN_BASE
#              ROUNDS      timed `runs ls` per N, median reported (default 5)
# Needs root (the real runs) and python3. N runs are made from a few real
# ones: each copy is the record of a real run with a new run id (record.json
# and its index line, as the writer makes them; the shared parts are the
# real run's objects). Everything lives in one temp dir, removed on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
EXPRUN=${EXPRUN_BIN:-$REPO/target/release/exprun}
ROUNDS=${ROUNDS:-5}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(2000 100000)
die() { printf 'bench-records: error: %s\n' "$*" >&2; exit 1; }
[ -x "$EXPRUN" ] || die "no exprun binary at $EXPRUN (cargo build --release, or set EXPRUN_BIN)"
BASE=${EXPRUN_BASE:-}
[ -z "$BASE" ] || [ -x "$BASE" ] || die "no exprun binary at EXPRUN_BASE=$BASE"
[ "$(id -u)" -eq 0 ] || die "must run as root (the real runs make cgroups)"
FIXTURE=$REPO/rootfs-fixtures/out/busybox-oci
[ -d "$FIXTURE" ] || die "no busybox fixture at $FIXTURE (rootfs-fixtures/build.sh)"

TMP=$(mktemp -d /tmp/bench-records.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/root
x() { "$EXPRUN" --root "$ROOT" "$@"; }
x image import --name busybox:latest "$FIXTURE" >/dev/null

# What one plain run adds: the run directory, its index line, new objects.
x run busybox:latest true
x runs ls >/dev/null                       # the index exists from here on
app() { du -s --apparent-size -B1 "$1" | cut -f1; }
blk() { du -s -B1 "$1" | cut -f1; }
b_app=$(app "$ROOT/runs"); b_blk=$(blk "$ROOT/runs"); b_obj=$(app "$ROOT/runs/.objects")
x run busybox:latest true
a_app=$(app "$ROOT/runs"); a_blk=$(blk "$ROOT/runs"); a_obj=$(app "$ROOT/runs/.objects")
id=$(ls -t "$ROOT/runs" | grep -v '^\.' | grep -v by-name | head -n1)
rec=$(stat -c %s "$ROOT/runs/$id/record.json")
line=$(grep -F "\"$id\"" "$ROOT/runs/.index" | wc -c)
echo "one plain run adds: $((a_app - b_app)) bytes apparent, $((a_blk - b_blk)) in blocks:" \
     "record.json $rec, index line $line, new objects $((a_obj - b_obj)), the directory $(stat -c %s "$ROOT/runs/$id")"
echo "objects shared by every run of busybox true: $(ls "$ROOT/runs/.objects/sha256" | wc -l)," \
     "$(app "$ROOT/runs/.objects") bytes apparent"

# The fsync of a record: a 3 KB write, then rename in the same directory, with and without.
python3 - "$ROOT/runs/$id/record.json" "$TMP" <<'EOF'
import os, sys, time
data = open(sys.argv[1], 'rb').read()
d = os.path.join(sys.argv[2], 'fsync'); os.mkdir(d)
for sync in (False, True, False, True):
    t = []
    for i in range(300):
        s = time.perf_counter()
        p = os.path.join(d, f'.r{i}.tmp')
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        if sync:
            os.fsync(fd)
        os.close(fd)
        os.rename(p, os.path.join(d, f'r{i}'))
        t.append(time.perf_counter() - s)
    t.sort()
    print(f"record write {'with' if sync else 'without'} fsync: median {t[len(t)//2]*1e6:.0f} us, p90 {t[len(t)*9//10]*1e6:.0f} us")
EOF

# N runs: copies of the last real run's record under new ids.
make_copies() {
    python3 - "$ROOT/runs" "$id" "$1" <<'EOF'
import os, sys
runs, src, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
rec = open(os.path.join(runs, src, 'record.json')).read()
line = next(l for l in open(os.path.join(runs, '.index')) if f'"{src}"' in l)
have = sum(1 for n in os.listdir(runs) if not n.startswith('.') and n != 'by-name')
idx = os.open(os.path.join(runs, '.index'), os.O_WRONLY | os.O_APPEND)
for n in range(have, want):
    new = f'{n:08x}' + src[8:]
    d = os.path.join(runs, new)
    os.mkdir(d, 0o700)
    with open(os.path.join(d, 'record.json'), 'w') as f:
        f.write(rec.replace(src, new))
    os.write(idx, line.replace(src, new).encode())
os.close(idx)
EOF
}

time_ls() {
    python3 - "$ROOT" "$ROUNDS" "$EXPRUN" "$BASE" "$@" <<'EOF'
import subprocess, sys, time
root, rounds, exe, base, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
def once(b):
    s = time.perf_counter()
    subprocess.run([b, '--root', root, 'runs', 'ls', *args], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - s
t, tb = [], []
for _ in range(rounds):
    if base:
        tb.append(once(base))
    t.append(once(exe))
med = lambda v: sorted(v)[len(v) // 2]
line = f"{med(t):.3f} s (min {min(t):.3f}, max {max(t):.3f})"
if base:
    r = [a / b for a, b in zip(t, tb)]
    line += f"; base {med(tb):.3f} s (min {min(tb):.3f}, max {max(tb):.3f}); ratio {med(r):.2f} ({min(r):.2f}-{max(r):.2f})"
print(line)
EOF
}

for n in "${SIZES[@]}"; do
    make_copies "$n"
    echo "runs: $n (load $(cut -d' ' -f1-3 /proc/loadavg); $(du -s -B1 --apparent-size "$ROOT/runs" | cut -f1) bytes apparent, $(du -s -B1 "$ROOT/runs" | cut -f1) in blocks)"
    echo "  runs ls:                          $(time_ls)"
    echo "  runs ls --json:                   $(time_ls --json)"
    echo "  runs ls --name nosuch (filtered): $(time_ls --name nosuch)"
    if [ "$n" -le 10000 ]; then
        rm -f "$ROOT/runs/.index"
        echo "  runs ls rebuilding the index:     $(ROUNDS=1 BASE='' time_ls)"
    fi
done
