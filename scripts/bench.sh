#!/usr/bin/env bash
# Start-up benchmark: exprun run (from its image store), exprun run -b, crun run
# and runc run (the last three on one OCI bundle, same command line), same
# busybox image, process /bin/true, warm (back to back), cold (0.3 s idle
# before each run), burst (blocks of back-to-back runs of one runtime), exec
# (runc-style `exec ID /bin/true` into a running container of each runtime)
# and rootless (exprun run as a user, with a root-owned binary and with the
# user's own copy, against exprun run as root).
#
# Usage: bash scripts/bench.sh [--runs N] [--quick] [--json FILE] [--runtimes LIST]
#                              [--modes LIST] [--burst N] [--burst-reps R]
#   --runs N         recorded rounds per mode (default 40)
#   --quick          8 rounds, bursts of 10 twice (CI smoke)
#   --json FILE      also write the results as JSON to FILE
#   --runtimes LIST  comma-separated subset of exprun,exprun-bundle,crun,runc
#                    (default: all)
#   --modes LIST     comma-separated subset of warm,cold,burst,exec,rootless
#                    (default: all)
#   --burst N        runs per burst (default 100); --burst-reps R: bursts per
#                    runtime (default 5)
#
# Environment: EXPRUN_BIN  exprun binary to use as is (skips cargo build);
#   default: the static-pie release build of scripts/build-release.sh.
# Needs root. Installs runc, crun, umoci, skopeo, jq, python3, time (and for
# the rootless mode uidmap) if missing.
# If crun 1.8.1 would refuse the host (a hybrid host whose cgroup2 mount holds
# hugetlb, with no v1 hugetlb hierarchy), mounts a v1 hugetlb hierarchy at
# /sys/fs/cgroup/hugetlb and leaves it there (a host fix for crun, printed).
# The rootless mode runs as the user exprun-bench (made with useradd if missing
# and then removed) with subordinate ids added to /etc/subuid and /etc/subgid
# for the run (removed again), like a user made by adduser.
# Everything else it makes lives in one temp dir, removed on every exit path.
# Timing is done by scripts/bench_driver.py (see its header).
set -euo pipefail

RUNS=40
JSON_OUT=''
RUNTIMES='exprun,exprun-bundle,crun,runc'
MODES='warm,cold,burst,exec,rootless'
BURST=100
BURST_REPS=5
BENCH_USER=exprun-bench

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$SCRIPT_DIR/.." && pwd -P)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '10,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --runs) [ $# -ge 2 ] || die "--runs needs a number"; RUNS=$2; shift ;;
        --runs=*) RUNS=${1#--runs=} ;;
        --quick) RUNS=8; BURST=10; BURST_REPS=2 ;;
        --json) [ $# -ge 2 ] || die "--json needs a file"; JSON_OUT=$2; shift ;;
        --json=*) JSON_OUT=${1#--json=} ;;
        --runtimes) [ $# -ge 2 ] || die "--runtimes needs a list"; RUNTIMES=$2; shift ;;
        --runtimes=*) RUNTIMES=${1#--runtimes=} ;;
        --modes) [ $# -ge 2 ] || die "--modes needs a list"; MODES=$2; shift ;;
        --modes=*) MODES=${1#--modes=} ;;
        --burst) [ $# -ge 2 ] || die "--burst needs a number"; BURST=$2; shift ;;
        --burst=*) BURST=${1#--burst=} ;;
        --burst-reps) [ $# -ge 2 ] || die "--burst-reps needs a number"; BURST_REPS=$2; shift ;;
        --burst-reps=*) BURST_REPS=${1#--burst-reps=} ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
case $RUNS in ''|*[!0-9]*) die "--runs wants a positive integer, got '$RUNS'" ;; esac
[ "$RUNS" -ge 1 ] || die "--runs must be at least 1"
for n in "$BURST" "$BURST_REPS"; do
    case $n in ''|*[!0-9]*) die "--burst and --burst-reps want positive integers, got '$n'" ;; esac
    [ "$n" -ge 1 ] || die "--burst and --burst-reps must be at least 1"
done
if [ -n "$JSON_OUT" ]; then
    case $JSON_OUT in /*) ;; *) JSON_OUT=$PWD/$JSON_OUT ;; esac
fi

WANT=()
IFS=, read -r -a WANT <<<"$RUNTIMES"
[ ${#WANT[@]} -gt 0 ] || die "--runtimes is empty"
want() { local r; for r in "${WANT[@]}"; do [ "$r" = "$1" ] && return 0; done; return 1; }
for r in "${WANT[@]}"; do
    case $r in exprun|exprun-bundle|crun|runc) ;; *) die "unknown runtime in --runtimes: $r" ;; esac
done
WANT_MODES=()
IFS=, read -r -a WANT_MODES <<<"$MODES"
[ ${#WANT_MODES[@]} -gt 0 ] || die "--modes is empty"
mode() { local m; for m in "${WANT_MODES[@]}"; do [ "$m" = "$1" ] && return 0; done; return 1; }
for m in "${WANT_MODES[@]}"; do
    case $m in warm|cold|burst|exec|rootless) ;; *) die "unknown mode in --modes: $m (known: warm,cold,burst,exec,rootless)" ;; esac
done
# warm, cold and burst run the --runtimes commands; exec one container per
# runtime (exprun for exprun or exprun-bundle); rootless only exprun.
RUN_MODES=0
{ mode warm || mode cold || mode burst; } && RUN_MODES=1
NEED_EXPRUN=0
if { [ "$RUN_MODES" -eq 1 ] || mode exec; } && { want exprun || want exprun-bundle; }; then NEED_EXPRUN=1; fi
mode rootless && NEED_EXPRUN=1

[ "$(id -u)" -eq 0 ] || die "must run as root (runc, crun and exprun run need it)"
START_SECONDS=$SECONDS

# -------------------------------------------------------------- tools ----
ensure_tools() {
    local t pkgs=()
    for t in runc crun umoci skopeo jq python3; do
        command -v "$t" >/dev/null 2>&1 || pkgs+=("$t")
    done
    # GNU time (not the shell keyword) measures peak RSS without the
    # driver's own memory; see bench_driver.py.
    [ -x /usr/bin/time ] || pkgs+=(time)
    # The rootless mode: newuidmap/newgidmap, and setpriv for its set-up.
    if mode rootless; then
        command -v newuidmap >/dev/null 2>&1 || pkgs+=(uidmap)
        command -v setpriv >/dev/null 2>&1 || pkgs+=(util-linux)
    fi
    [ ${#pkgs[@]} -eq 0 ] && return 0
    log "installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${pkgs[@]}" >&2; then
        log "install failed; running apt-get update and retrying"
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y "${pkgs[@]}" >&2 || die "could not install ${pkgs[*]}"
    fi
}
ensure_tools

# ------------------------------------------- crun vs hybrid cgroups fix ----
# crun 1.8.1 refuses a hybrid host whose cgroup2 mount holds any controller
# ("cgroups in hybrid mode not supported"). Here that controller is hugetlb,
# which has no v1 hierarchy: mounting one moves hugetlb from cgroup2 to v1.
HOST_FIX=''
cgroup2_mount() { awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") print $5; break } }' /proc/self/mountinfo | head -n1; }
v1_has() { awk -v c="$1" '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup") { n = split($(i+3), o, ","); for (j = 1; j <= n; j++) if (o[j] == c) f = 1 } break } } END { exit !f }' /proc/self/mountinfo; }
any_v1() { awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup") f = 1; break } } END { exit !f }' /proc/self/mountinfo; }
fix_hugetlb() {
    local cg2 ctrls
    cg2=$(cgroup2_mount)
    [ -n "$cg2" ] && [ -r "$cg2/cgroup.controllers" ] || return 0
    # Only hybrid hosts: on a unified one (no v1 hierarchy at all) crun runs
    # as it is, and a v1 mount would make the host hybrid.
    any_v1 || return 0
    ctrls=$(cat "$cg2/cgroup.controllers")
    if [[ " $ctrls " == *" hugetlb "* ]] && ! v1_has hugetlb; then
        mkdir -p /sys/fs/cgroup/hugetlb
        mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb ||
            die "could not mount a v1 hugetlb hierarchy at /sys/fs/cgroup/hugetlb"
        HOST_FIX="mounted a v1 hugetlb cgroup hierarchy at /sys/fs/cgroup/hugetlb (was on the cgroup2 mount $cg2; crun 1.8.1 refuses hybrid hosts whose cgroup2 holds a controller); left in place"
        log "host fix for crun: $HOST_FIX"
        ctrls=$(cat "$cg2/cgroup.controllers")
    fi
    if [ -n "${ctrls//[[:space:]]/}" ] && want crun; then
        log "warning: the cgroup2 mount $cg2 still holds controllers ($ctrls); crun 1.8.1 may refuse to run"
    fi
}
fix_hugetlb

# -------------------------------------------------------------- exprun ----
if [ "$NEED_EXPRUN" -eq 1 ]; then
    if [ -n "${EXPRUN_BIN:-}" ]; then
        log "using EXPRUN_BIN=$EXPRUN_BIN (not building)"
        EXPRUN_GIVEN=1
    else
        command -v cargo >/dev/null 2>&1 || die "cargo not found (set EXPRUN_BIN to use a prebuilt exprun)"
        log "scripts/build-release.sh (static-pie release build)"
        build_err=$(mktemp)
        if ! EXPRUN_BIN=$(bash "$REPO/scripts/build-release.sh" 2>"$build_err"); then
            cat "$build_err" >&2
            rm -f "$build_err"
            die "scripts/build-release.sh failed"
        fi
        rm -f "$build_err"
        case $EXPRUN_BIN in /*) ;; *) EXPRUN_BIN=$REPO/$EXPRUN_BIN ;; esac
    fi
    [ -x "$EXPRUN_BIN" ] || die "exprun binary not found or not executable: $EXPRUN_BIN"
    case $EXPRUN_BIN in /*) ;; *) EXPRUN_BIN=$PWD/$EXPRUN_BIN ;; esac
fi

log "building the fixture image (rootfs-fixtures/build.sh)"
if ! fixture_log=$(bash "$REPO/rootfs-fixtures/build.sh" 2>&1); then
    printf '%s\n' "$fixture_log" >&2
    die "rootfs-fixtures/build.sh failed"
fi
IMAGE_DIR=$REPO/rootfs-fixtures/out/busybox-oci
[ -f "$IMAGE_DIR/index.json" ] || die "no OCI layout at $IMAGE_DIR"

# ------------------------------------------------------ temp + cleanup ----
TMP=$(mktemp -d "${TMPDIR:-/tmp}/exprun-bench.XXXXXX")
ID_PREFIX="exbench$$"
DRIVER_PID=''
MADE_USER=0
SUBID_FILES=()

cleanup() {
    local rc=$? rt id m leftover=0
    local exprun_ids=()
    trap - EXIT INT TERM HUP
    set +e
    case $rc in 129|130|143) log "interrupted; cleaning up" ;; esac
    if [ -n "${DRIVER_PID:-}" ]; then
        kill -TERM "$DRIVER_PID" 2>/dev/null
        wait "$DRIVER_PID" 2>/dev/null
    fi
    if [ -n "${TMP:-}" ] && [ -d "$TMP" ]; then
        # Containers left by an interrupted or failed run.
        for rt in runc crun; do
            [ -d "$TMP/$rt-state" ] || continue
            for id in $("$rt" --root "$TMP/$rt-state" list -q 2>/dev/null); do
                log "cleanup: $rt delete -f $id"
                "$rt" --root "$TMP/$rt-state" delete -f "$id" >/dev/null 2>&1
            done
        done
        # exprun: bundle containers left by a killed run -b, then runs whose
        # exprun was killed (mounts, cgroups, state dir).
        for id in $("${EXPRUN_BIN:-exprun}" --root "$TMP/root" list -q 2>/dev/null); do
            log "cleanup: exprun delete -f $id"
            "${EXPRUN_BIN:-exprun}" --root "$TMP/root" delete -f "$id" >/dev/null 2>&1
        done
        if [ -n "$(ls -A "$TMP/root/containers" 2>/dev/null)" ]; then
            log "cleanup: exprun gc for leftover containers in $TMP/root"
            "${EXPRUN_BIN:-exprun}" --root "$TMP/root" gc >/dev/null 2>&1
        fi
        for m in "$TMP"/root/runs/* "$TMP"/root/containers/*; do
            [ -d "$m" ] && exprun_ids+=("${m##*/}")
        done
        # Nothing may stay mounted under $TMP; unmount deepest first.
        while IFS= read -r m; do
            log "cleanup: unmounting leftover mount $m"
            umount "$m" 2>/dev/null || umount -l "$m"
        done < <(awk -v t="$TMP" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
        if grep -qF " $TMP" /proc/self/mountinfo; then
            log "error: still mounted under $TMP, not removing it:"
            grep -F " $TMP" /proc/self/mountinfo >&2
            leftover=1
        else
            rm -rf --one-file-system "$TMP" || leftover=1
        fi
    fi
    # cgroups of the bench containers: runc/crun put theirs at
    # /sys/fs/cgroup/<controller>/<id> (runc's memory one under the caller's
    # memory cgroup); exprun names its cgroups exprun-<run id>.
    while IFS= read -r m; do
        [ -n "$m" ] || continue
        case ${m##*/} in
            "$ID_PREFIX"-*) ;;
            exprun-*) id=${m##*/exprun-}; [[ " ${exprun_ids[*]} " == *" $id "* ]] || continue ;;
            *) continue ;;
        esac
        log "cleanup: removing leftover cgroup $m"
        rmdir "$m" 2>/dev/null || { log "error: could not remove cgroup $m"; leftover=1; }
    done < <(find /sys/fs/cgroup -mindepth 2 -maxdepth 7 -type d \( -name "$ID_PREFIX-*" -o -name 'exprun-*' \) -prune 2>/dev/null | sort -r)
    # The rootless mode's subordinate ids and user, if this run added them.
    for m in "${SUBID_FILES[@]}"; do
        sed -i "/^$BENCH_USER:/d" "$m" || { log "error: could not remove $BENCH_USER from $m"; leftover=1; }
    done
    if [ "$MADE_USER" -eq 1 ]; then
        userdel "$BENCH_USER" >/dev/null 2>&1 || { log "error: userdel $BENCH_USER failed"; leftover=1; }
    fi
    [ "$leftover" -eq 0 ] || log "cleanup left something behind (see above)"
    [ -z "$HOST_FIX" ] || log "note: $HOST_FIX"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------- images ----
if { [ "$RUN_MODES" -eq 1 ] && want exprun; } || mode rootless; then
    log "exprun image import (private root $TMP/root)"
    "$EXPRUN_BIN" --root "$TMP/root" image import "$IMAGE_DIR" --name busybox:latest >/dev/null ||
        die "exprun image import failed"
fi

NEED_BUNDLE=0
if { [ "$RUN_MODES" -eq 1 ] && { want runc || want crun || want exprun-bundle; }; } || mode exec; then
    NEED_BUNDLE=1
fi
if [ "$NEED_BUNDLE" -eq 1 ]; then
    log "bundle for runc/crun/exprun -b: skopeo copy (gzip) + umoci unpack"
    skopeo copy "oci:$IMAGE_DIR:latest" "oci:$TMP/gz:latest" \
        --dest-compress --dest-compress-format gzip >/dev/null ||
        die "skopeo copy failed"
    umoci unpack --image "$TMP/gz:latest" "$TMP/bundle" >/dev/null 2>&1 ||
        die "umoci unpack failed"
    rm -f "$TMP/bundle/config.json"
    (cd "$TMP/bundle" && runc spec) || die "runc spec failed"
    jq '.process.args = ["/bin/true"]
        | .process.terminal = false
        | .root.readonly = false
        | .hostname = "exprun"
        | if any(.linux.namespaces[]; .type == "cgroup") then .
          else .linux.namespaces += [{"type": "cgroup"}] end' \
        "$TMP/bundle/config.json" >"$TMP/config.json.new" || die "jq failed on config.json"
    mv "$TMP/config.json.new" "$TMP/bundle/config.json"
    mkdir -p "$TMP/runc-state" "$TMP/crun-state"
fi

# --------------------------------------------------------------- facts ----
META=()
meta() { META+=(--meta "$1=$2"); printf '%-10s %s\n' "$1:" "$2"; }
echo "exprun start-up benchmark"
meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta kernel "$(uname -r)"
meta load "$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average before timing)"
meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) ($(nproc) CPUs)"
if [ "$NEED_EXPRUN" -eq 1 ]; then
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -z "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] || rev="$rev+dirty"
    if [ "${EXPRUN_GIVEN:-0}" -eq 1 ]; then
        meta exprun "$("$EXPRUN_BIN" --version | head -n1) ($EXPRUN_BIN, given as EXPRUN_BIN: not built from the repo, which is at $rev)"
    else
        meta exprun "$("$EXPRUN_BIN" --version | head -n1) (repo $rev, $EXPRUN_BIN)"
    fi
fi
want crun && meta crun "$(crun --version | head -n1)"
want runc && meta runc "$(runc --version | head -n1)"
meta cgroups "$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") v2 = 1; else if ($(i+1) == "cgroup") v1 = 1; break } } END { print (v1 && v2) ? "hybrid (v1 + cgroup2)" : v2 ? "v2" : "v1" }' /proc/self/mountinfo)"
[ -n "$HOST_FIX" ] && meta host_fix "$HOST_FIX"
meta workload "busybox fixture image (rootfs-fixtures), /bin/true, writable root, ns pid net ipc uts mnt cgroup"
meta rounds "$RUNS per mode"
meta modes "$MODES$(mode burst && echo " (burst: $BURST runs x $BURST_REPS)")"

CMDS=()
for r in "${WANT[@]}"; do
    [ "$RUN_MODES" -eq 1 ] || break
    case $r in
        exprun) CMDS+=(--cmd exprun "$EXPRUN_BIN --root $TMP/root run busybox:latest -- /bin/true") ;;
        exprun-bundle) CMDS+=(--cmd exprun-bundle "$EXPRUN_BIN --root $TMP/root run -b $TMP/bundle {id}") ;;
        crun) CMDS+=(--cmd crun "$(command -v crun) --root $TMP/crun-state run -b $TMP/bundle {id}") ;;
        runc) CMDS+=(--cmd runc "$(command -v runc) --root $TMP/runc-state run -b $TMP/bundle {id}") ;;
    esac
done
for ((i = 1; i < ${#CMDS[@]}; i += 3)); do
    printf '%-10s %s\n' "cmd ${CMDS[i]}:" "${CMDS[i+1]//\{id\}/<unique id>}"
done

# ---------------------------------------------------------------- exec ----
# One container per runtime, started detached from a second bundle (the same
# rootfs, `sleep`), stdio on /dev/null; the timed command is the runtime's
# runc-compatible `exec ID /bin/true` under the same --root.
EXEC_CMDS=()
EXEC_RTS=()
if mode exec; then
    { want exprun || want exprun-bundle; } && EXEC_RTS+=(exprun)
    want crun && EXEC_RTS+=(crun)
    want runc && EXEC_RTS+=(runc)
    mkdir -p "$TMP/bundle-sleep"
    jq --arg root "$TMP/bundle/rootfs" '.process.args = ["sleep", "1000000"] | .root.path = $root' \
        "$TMP/bundle/config.json" >"$TMP/bundle-sleep/config.json" || die "jq failed on the sleep bundle"
    for rt in "${EXEC_RTS[@]}"; do
        case $rt in
            exprun) bin=$EXPRUN_BIN; state=$TMP/root ;;
            *) bin=$(command -v "$rt"); state=$TMP/$rt-state ;;
        esac
        id=$ID_PREFIX-exec-$rt
        log "exec: $rt run -d $id (sleep)"
        "$bin" --root "$state" run -d -b "$TMP/bundle-sleep" "$id" </dev/null >/dev/null 2>"$TMP/exec-start.err" || {
            cat "$TMP/exec-start.err" >&2
            die "$rt run -d of the exec container failed"
        }
        EXEC_CMDS+=(--exec-cmd "$rt" "$bin --root $state exec $id /bin/true")
    done
    for ((i = 1; i < ${#EXEC_CMDS[@]}; i += 3)); do
        printf '%-10s %s\n' "exec ${EXEC_CMDS[i]}:" "${EXEC_CMDS[i+1]}"
    done
fi
stop_exec_containers() {
    local rt bin state
    for rt in "${EXEC_RTS[@]}"; do
        case $rt in
            exprun) bin=$EXPRUN_BIN; state=$TMP/root ;;
            *) bin=$(command -v "$rt"); state=$TMP/$rt-state ;;
        esac
        "$bin" --root "$state" delete -f "$ID_PREFIX-exec-$rt" >/dev/null 2>&1 ||
            log "warning: $rt delete -f $ID_PREFIX-exec-$rt failed (the exit trap tries again)"
    done
}

# ------------------------------------------------------------ rootless ----
# exprun run as the user $BENCH_USER with subordinate ids, from a root-owned
# copy of the binary and from the user's own copy (the sealed-memfd re-exec),
# against exprun run as root from that root-owned copy. The driver spawns the
# user's runs itself (--as: real ids lent around posix_spawn, RESETIDS), so no
# setpriv or sudo sits in the timed path.
ROOTLESS_CMDS=()
if mode rootless; then
    if ! id -u "$BENCH_USER" >/dev/null 2>&1; then
        log "rootless: useradd $BENCH_USER (removed at exit)"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$BENCH_USER" ||
            die "useradd $BENCH_USER failed"
        MADE_USER=1
    fi
    BU=$(id -u "$BENCH_USER")
    BG=$(id -g "$BENCH_USER")
    for f in /etc/subuid /etc/subgid; do
        if ! grep -q "^$BENCH_USER:\|^$BU:" "$f" 2>/dev/null; then
            # Past every range already given out (at least 4100000).
            start=$(awk -F: 'BEGIN { m = 4100000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$f" 2>/dev/null || echo 4100000)
            echo "$BENCH_USER:$start:65536" >>"$f"
            SUBID_FILES+=("$f")
        fi
    done
    # The user must reach its home and binaries inside the temp dir.
    chmod 0711 "$TMP"
    mkdir -p "$TMP/bin" "$TMP/rootless/bin" "$TMP/rootless/data" "$TMP/rootless/run"
    cp "$EXPRUN_BIN" "$TMP/bin/exprun"
    chmod 0755 "$TMP/bin" "$TMP/bin/exprun"
    cp "$EXPRUN_BIN" "$TMP/rootless/bin/exprun"
    cp -a "$IMAGE_DIR" "$TMP/rootless/image"
    chown -R "$BU:$BG" "$TMP/rootless"
    chmod 0700 "$TMP/rootless" "$TMP/rootless/run"
    chmod 0755 "$TMP/rootless/bin/exprun"
    USER_ENV=(HOME="$TMP/rootless" XDG_DATA_HOME="$TMP/rootless/data"
              XDG_RUNTIME_DIR="$TMP/rootless/run" PATH=/usr/bin:/bin)
    log "rootless: image import as $BENCH_USER"
    (cd / && setpriv --reuid="$BU" --regid="$BG" --clear-groups env -i "${USER_ENV[@]}" \
        "$TMP/bin/exprun" image import "$TMP/rootless/image" --name busybox:latest >/dev/null) ||
        die "rootless: exprun image import as $BENCH_USER failed"
    ROOTLESS_CMDS+=(--rootless-cmd root "$TMP/bin/exprun --root $TMP/root run busybox:latest -- /bin/true")
    ROOTLESS_CMDS+=(--rootless-cmd rootless-rootbin "$TMP/bin/exprun run --no-limits busybox:latest -- /bin/true")
    ROOTLESS_CMDS+=(--rootless-cmd rootless-ownbin "$TMP/rootless/bin/exprun run --no-limits busybox:latest -- /bin/true")
    for n in rootless-rootbin rootless-ownbin; do
        ROOTLESS_CMDS+=(--as "$n" "$BU:$BG")
        for kv in "${USER_ENV[@]}"; do ROOTLESS_CMDS+=(--env-for "$n" "$kv"); done
    done
    ROOTLESS_CMDS+=(--rootless-ref "rootless-rootbin,rootless-ownbin")
    # What the user's own binary (the sealed-memfd re-exec) costs by itself.
    ROOTLESS_CMDS+=(--pair rootless rootless-ownbin/rootless-rootbin)
    meta rootless "user $BENCH_USER (uid $BU), subordinate ids $(grep "^$BENCH_USER:" /etc/subuid | head -n1 | cut -d: -f2-); rootbin: a root-owned copy of exprun, ownbin: a copy owned by the user"
    for ((i = 1; i < ${#ROOTLESS_CMDS[@]}; i += 3)); do
        [ "${ROOTLESS_CMDS[i-1]}" = --rootless-cmd ] || break
        printf '%-10s %s\n' "rootless ${ROOTLESS_CMDS[i]}:" "${ROOTLESS_CMDS[i+1]}"
    done
fi

JSON_ARGS=()
[ -n "$JSON_OUT" ] && JSON_ARGS=(--json "$JSON_OUT")
log "timing: modes $MODES, $RUNS rounds per mode"
REFS=()
want exprun && REFS+=(exprun)
want exprun-bundle && REFS+=(exprun-bundle)
REF=()
[ ${#REFS[@]} -gt 0 ] && [ "$RUN_MODES" -eq 1 ] && REF=(--ref "$(IFS=,; echo "${REFS[*]}")")
# issue 19's targets, as paired ratios (the driver leaves out what it did
# not measure).
TARGETS=()
for ref in "${REFS[@]}"; do
    TARGETS+=(--target "warm:$ref/crun:wall<=0.5" --target "warm:$ref/runc:wall<=0.3"
              --target "warm:$ref/crun:cpu<=0.8" --target "cold:$ref/crun:wall<=0.4"
              --target "warm:$ref/crun:rss<=1" --target "burst:$ref/crun:wall<=0.5")
done
TARGETS+=(--target "exec:exprun/crun:wall<=0.6" --target "rootless:rootless-ownbin/root:wall<=1.3")
# In the background and waited for, so that a signal to this script runs the
# cleanup trap at once (the trap stops the driver first). From / so that the
# rootless user's runs start in a directory it can reach.
cd /
python3 "$SCRIPT_DIR/bench_driver.py" --runs "$RUNS" "${REF[@]}" --scratch "$TMP" \
    --modes "$MODES" --burst-size "$BURST" --burst-reps "$BURST_REPS" \
    --rss-wrapper /usr/bin/time --rss-runs 5 \
    --id-prefix "$ID_PREFIX" "${META[@]}" "${JSON_ARGS[@]}" "${CMDS[@]}" \
    "${EXEC_CMDS[@]}" "${ROOTLESS_CMDS[@]}" "${TARGETS[@]}" &
DRIVER_PID=$!
driver_rc=0
wait "$DRIVER_PID" || driver_rc=$?
DRIVER_PID=''
[ "$driver_rc" -eq 0 ] || die "benchmark aborted (see above)"
stop_exec_containers

echo "total time: $((SECONDS - START_SECONDS)) s (including build, fixture and bundle)"
[ -z "$JSON_OUT" ] || echo "json: $JSON_OUT"
