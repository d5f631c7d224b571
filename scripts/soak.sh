#!/usr/bin/env bash
# Soak and fault test of exprun run: many sequential and concurrent runs of
# /bin/true, then runs SIGKILLed at random points of their set-up, then a check
# that nothing is left behind. Not part of `cargo test` (it takes a minute or
# two); run it as root after changes to spawn, state or cgroups.
#
# Usage: bash scripts/soak.sh [--sequential N] [--concurrent N] [--kills N]
#   --sequential N   runs one after another (default 1000)
#   --concurrent N   runs in each of two parallel loops (default 500)
#   --kills N        runs SIGKILLed 0-40 ms after they start (default 100)
#
# A run that takes more than 30 s counts as a hang. Exit 0 when no run hung or
# failed and nothing was left behind; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

SEQ=1000 CONC=500 KILLS=100
while [ $# -gt 0 ]; do
    case $1 in
        --sequential) SEQ=$2; shift ;;
        --concurrent) CONC=$2; shift ;;
        --kills) KILLS=$2; shift ;;
        -h|--help) sed -n '7,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "soak: needs root" >&2; exit 2; }

BIN=$(bash scripts/build-release.sh)
[ -d rootfs-fixtures/out/busybox-oci ] || bash rootfs-fixtures/build.sh >&2
ROOT=$(mktemp -d /tmp/exprun-soak.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
"$BIN" --root "$ROOT" image import rootfs-fixtures/out/busybox-oci --name busybox:latest >/dev/null

failures=0
run_loop() { # count label
    local n=$1 bad=0 i
    for ((i = 0; i < n; i++)); do
        if ! timeout 30 "$BIN" --root "$ROOT" run busybox:latest -- /bin/true; then
            bad=$((bad + 1))
        fi
    done
    echo "$bad"
}
now() { date +%s.%N; }

t0=$(now)
bad=$(run_loop "$SEQ")
t1=$(now)
failures=$((failures + bad))
printf 'sequential: %d runs in %.1f s (%.2f ms each), %d failed or hung\n' \
    "$SEQ" "$(echo "$t1 - $t0" | bc)" "$(echo "($t1 - $t0) * 1000 / $SEQ" | bc -l)" "$bad"

t0=$(now)
run_loop "$CONC" >"$ROOT/a.bad" &
run_loop "$CONC" >"$ROOT/b.bad" &
wait
t1=$(now)
bad=$(( $(cat "$ROOT/a.bad") + $(cat "$ROOT/b.bad") ))
failures=$((failures + bad))
printf 'concurrent: 2 x %d runs in %.1f s, %d failed or hung\n' "$CONC" "$(echo "$t1 - $t0" | bc)" "$bad"

# Kill exprun at random points of create and run; the command would sleep.
for ((i = 0; i < KILLS; i++)); do
    "$BIN" --root "$ROOT" run busybox:latest -- sleep 30 >/dev/null 2>&1 &
    pid=$!
    sleep "$(printf "0.%03d" $((RANDOM % 40 + 1)))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
# The containers die with exprun (parent-death signal); give the kernel a moment.
sleep 1
"$BIN" --root "$ROOT" gc >/dev/null
records=$("$BIN" --root "$ROOT" runs ls --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r), sum(1 for x in r if x["status"]=="lost"))')
printf 'killed: %d runs; records now %s (total, lost)\n' "$KILLS" "$records"

leftover=0
live=$(find "$ROOT/containers" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
[ "$live" = 0 ] || { echo "left behind: $live run directories"; leftover=1; }
ids=$(cd "$ROOT/runs" && ls -d [0-9a-f]*/ 2>/dev/null | tr -d / || true)
cg=$(find /sys/fs/cgroup -type d -name 'exprun-*' 2>/dev/null | sed 's/.*exprun-//' | grep -cxF -f <(echo "$ids") || true)
[ "$cg" = 0 ] || { echo "left behind: $cg cgroups"; leftover=1; }
if grep -q "$ROOT" /proc/self/mountinfo; then echo "left behind: mounts under $ROOT"; leftover=1; fi
procs=$(pgrep -fc "$ROOT" || true)
[ "$procs" = 0 ] || { echo "left behind: $procs processes"; leftover=1; }
echo "leftovers: $([ $leftover = 0 ] && echo none || echo FOUND)"
[ "$failures" = 0 ] && [ "$leftover" = 0 ]
