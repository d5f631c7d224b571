#!/usr/bin/env bash
# Conformance runner: runs a public OCI conformance suite, checked out and built
# elsewhere, against exprun, runc and crun in one run and prints per-test
# verdicts side by side. Not part of `cargo test` or CI (it takes minutes and
# needs the suite built). Run it as root. docs/oci-runtime.md ("Conformance")
# says how to get and build each suite.
#
# Usage: bash scripts/conformance.sh SUITE DIR [options]
#   SUITE DIR            runtime-tools DIR: a built opencontainers/runtime-tools
#                        checkout (make runtimetest validation-executables);
#                        contest DIR: a youki checkout with contest and
#                        runtimetest built into DIR/bin; critest DIR: a
#                        cri-tools checkout with critest built as DIR/build/critest
#   --runtimes LIST      comma-separated, from exprun,runc,crun (default all three)
#   --only PATTERN       only tests whose name matches this extended regex
#                        (contest: group names; critest: a ginkgo focus)
#   --timeout SECS       time limit per test and runtime (runtime-tools, default
#                        60), per test group and runtime (contest, 120) or per
#                        runtime's whole run (critest, 2400)
#   --json FILE          also write the verdicts as JSON to FILE
#   --logs DIR           keep each run's output and stderr under DIR
#
# Binaries: $EXPRUN (default target/debug/exprun under $CARGO_TARGET_DIR or
# ./target), $RUNC (default runc on PATH), $CRUN (default crun on PATH);
# critest also needs containerd (default on PATH, or $CONTAINERD), its runc
# shim, ctr, docker-registry and skopeo.
#
# Each suite runs once per runtime (runtime-tools: each test binary once per
# runtime) in its own `unshare --mount --ipc --uts --pid --fork --mount-proc`,
# with the runtime behind a wrapper that logs its calls (to find the cgroups it
# made); scripts/conformance/SUITE.sh says how each suite is driven and how its
# cells read. When the namespace's init exits every process in it is gone and
# its mounts with it; the cgroups the run made are then removed.
# Exit 0 when nothing was left behind, 1 otherwise (failing, crashing or
# timed-out tests do not change the exit status), 2 on bad usage or a suite
# that is missing or not built. After the summary, a "behind" line names each
# test where the first runtime listed does worse than another.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    sed -n '/^# Usage:/,/^#$/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "conformance: $*" >&2
    exit 2
}

[ $# -ge 2 ] || usage
SUITE_KIND=$1 SUITE=$2
shift 2
case $SUITE_KIND in
    runtime-tools | contest | critest) ;;
    *) die "unknown suite '$SUITE_KIND': one of runtime-tools, contest, critest" ;;
esac
RUNTIMES=exprun,runc,crun ONLY='' TIMEOUT='' JSON='' LOGS=
while [ $# -gt 0 ]; do
    case $1 in
        --runtimes) RUNTIMES=${2:?--runtimes needs a list}; shift ;;
        --only) ONLY=${2:?--only needs a pattern}; shift ;;
        --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
        --json) JSON=${2:?--json needs a file}; shift ;;
        --logs) LOGS=${2:?--logs needs a directory}; shift ;;
        -h|--help) usage ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
case $SUITE_KIND in
    runtime-tools) TIMEOUT=${TIMEOUT:-60} ;;
    contest) TIMEOUT=${TIMEOUT:-120} ;;
    critest) TIMEOUT=${TIMEOUT:-2400} ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (the runtimes create namespaces and cgroups)"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, not '$TIMEOUT'"
SUITE_ARG=$SUITE
SUITE=$(cd "$SUITE" 2>/dev/null && pwd) ||
    die "suite directory '$SUITE_ARG' does not exist: docs/oci-runtime.md (Conformance) says how to get and build it"

declare -A BIN
IFS=, read -r -a RT_LIST <<<"$RUNTIMES"
[ ${#RT_LIST[@]} -gt 0 ] || die "--runtimes is empty"
for rt in "${RT_LIST[@]}"; do
    case $rt in
        exprun) BIN[$rt]=${EXPRUN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/exprun} ;;
        runc) BIN[$rt]=${RUNC:-$(command -v runc || true)} ;;
        crun) BIN[$rt]=${CRUN:-$(command -v crun || true)} ;;
        *) die "unknown runtime '$rt' in --runtimes (known: exprun, runc, crun)" ;;
    esac
    if [ -z "${BIN[$rt]}" ] || [ ! -x "${BIN[$rt]}" ]; then
        die "$rt binary '${BIN[$rt]}' not found or not executable (set ${rt^^}=/path/to/$rt)"
    fi
    BIN[$rt]=$(realpath "${BIN[$rt]}")
done
if [ -n "$LOGS" ]; then
    mkdir -p "$LOGS"
    LOGS=$(cd "$LOGS" && pwd)
fi

# Not under /tmp: contest's runs mount a private tmpfs there.
WORK=$(mktemp -d /var/tmp/exprun-conformance.XXXXXX)
LEFTOVERS=0
# Each suite adds what its own cleanup must do (stop a registry) to CLEANUP,
# run in reverse order on every exit path, after the cgroups of a run that was
# interrupted (IN_FLIGHT, see begin_run) are removed.
CLEANUP=() IN_FLIGHT=() CHILD=
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local i
    if [ -n "$CHILD" ]; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    [ ${#IN_FLIGHT[@]} -eq 0 ] || end_run
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP[$i]}" || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "conformance: ${BASH_SOURCE[0]##*/} line $LINENO: a command failed (exit $?)" >&2' ERR
trap 'exit 130' INT TERM

# Writes the runtime wrapper $1/runtime: logs each call's arguments to
# $1/calls, then runs binary $2 with the rest of the arguments before the
# caller's.
make_wrapper() {
    local run=$1 bin=$2
    shift 2
    printf '#!/bin/sh\necho "$*" >>%q\nexec %q' "$run/calls" "$bin" >"$run/runtime"
    [ $# -eq 0 ] || printf ' %q' "$@" >>"$run/runtime"
    printf ' "$@"\n' >>"$run/runtime"
    chmod +x "$run/runtime"
}

# Cgroup directories a run may make: the suite's fixed cgroupsPath names ($2,
# an extended regex) and those ending in the id of a container it created
# (runtimes name default cgroups after it: exprun "exprun-ID", runc and crun
# "ID"); the ids are the word after `create` and the last word of each create
# call the wrapper logged in $1.
own_cgroups() {
    local ids
    ids=$(awk '{ for (i = 1; i < NF; i++) if ($i == "create") { print $(i + 1); print $NF } }' "$1" 2>/dev/null |
        grep -E '^[A-Za-z0-9_-]+$' | sort -u | paste -sd'|' || true)
    echo "/($2${ids:+|[^/]*($ids)})(/|\$)"
}
cgroup_dirs() {
    find /sys/fs/cgroup -mindepth 2 -type d 2>/dev/null | LC_ALL=C sort
}

# Removes the cgroup directories the run $1 made: new since it started (the
# list in $1/cgroups.before) and named as own_cgroups says for the fixed names
# $2, deepest first. A process still in one (a container whose runtime lost
# it) is killed first. Prints any directory that cannot be removed.
remove_new_cgroups() {
    local run=$1 fixed=$2 d pid
    LC_ALL=C comm -13 "$run/cgroups.before" <(cgroup_dirs) |
        { grep -E -- "$(own_cgroups "$run/calls" "$fixed")" || true; } | sort -r |
        while read -r d; do
            if [ -f "$d/cgroup.procs" ]; then
                while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$d/cgroup.procs"
            fi
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                rmdir "$d" 2>/dev/null && break
                [ -d "$d" ] || break
                sleep 0.2
            done
            [ ! -d "$d" ] || echo "$d"
        done
}

# Runs a suite's namespaced command ("timeout ... unshare ... --kill-child")
# in the background and waits for it, so that a signal to this script reaches
# the exit trap at once: the trap ends the command (timeout passes the signal
# to unshare, which kills the namespace's init, and so every process in it)
# before removing the run's cgroups. Returns the command's exit status.
run_child() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return $rc
}

# A run in directory $1 whose cgroups are named as own_cgroups says for the
# fixed names $2, described as $3 in messages, starts: the cgroups now are
# recorded. end_run removes those it made and reports what is left; the exit
# trap calls it for a run that was interrupted.
begin_run() {
    cgroup_dirs >"$1/cgroups.before"
    IN_FLIGHT=("$@")
}
end_run() {
    local left
    left=$(remove_new_cgroups "${IN_FLIGHT[0]}" "${IN_FLIGHT[1]}")
    if [ -n "$left" ]; then
        echo "conformance: ${IN_FLIGHT[2]} left cgroups that cannot be removed: $left" >&2
        LEFTOVERS=1
    fi
    IN_FLIGHT=()
}

# crun 1.8 refuses a hybrid host whose cgroup v2 hierarchy has controllers
# ("cgroups in hybrid mode not supported"); for crun on such a host the runs
# unmount /sys/fs/cgroup/unified in their private mount namespace first (the
# host keeps it), so crun uses the v1 hierarchies as runc and exprun do.
hide_cgroup2() {
    if [ "$1" = crun ] && [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] &&
        [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers)" ]; then
        echo 1
    else
        echo 0
    fi
}

# The verdicts, filled by the suite's script, which also defines
# print_summary: TESTS (names, in order), CELL[test,runtime] (what the table
# shows), STATUS[test,runtime] (pass, fail, crash, timeout, skip, empty or
# missing), PASSN[test,runtime] (points passed, to compare runs that
# completed), JSON_ROWS (one object per test and runtime).
declare -A CELL STATUS PASSN
TESTS=() JSON_ROWS=()

# For the suites with one verdict per test (contest, critest): test $1 under
# runtime $2 has status $3 (pass, fail, skip, timeout or crash) and cell $4.
declare -A SEEN
record_verdict() {
    [ -n "${SEEN[$1]+x}" ] || TESTS+=("$1")
    SEEN[$1]=1
    STATUS[$1,$2]=$3 CELL[$1,$2]=$4 PASSN[$1,$2]=0
    [ "$3" != pass ] || PASSN[$1,$2]=1
}

# Marks the tests a runtime's run reported nothing for as missing, and makes
# the JSON rows.
finish_verdicts() {
    local t rt
    for t in "${TESTS[@]}"; do
        for rt in "${RT_LIST[@]}"; do
            [ -n "${STATUS[$t,$rt]+x}" ] || STATUS[$t,$rt]=missing PASSN[$t,$rt]=0 CELL[$t,$rt]=missing
            JSON_ROWS+=("$(jq -cn --arg test "$t" --arg runtime "$rt" --arg status "${STATUS[$t,$rt]}" \
                '{test: $test, runtime: $runtime, status: $status}')")
        done
    done
}

# The summary of those suites, then each run's exit status (RUN_EXIT).
RUN_EXIT=()
verdict_summary() {
    local rt t pass fail skip missing
    for rt in "${RT_LIST[@]}"; do
        pass=0 fail=0 skip=0 missing=0
        for t in "${TESTS[@]}"; do
            case ${STATUS[$t,$rt]} in
                pass) pass=$((pass + 1)) ;;
                fail) fail=$((fail + 1)) ;;
                skip) skip=$((skip + 1)) ;;
                *) missing=$((missing + 1)) ;;
            esac
        done
        printf 'summary %s: %d tests: %d pass, %d fail, %d skip, %d missing, timed out or crashed\n' \
            "$rt" ${#TESTS[@]} "$pass" "$fail" "$skip" "$missing"
    done
    [ ${#RUN_EXIT[@]} -eq 0 ] || printf '%s\n' "${RUN_EXIT[@]}"
}

case $SUITE_KIND in
    runtime-tools)
        # shellcheck source=scripts/conformance/runtime-tools.sh
        source "$REPO/scripts/conformance/runtime-tools.sh"
        ;;
    contest)
        # shellcheck source=scripts/conformance/contest.sh
        source "$REPO/scripts/conformance/contest.sh"
        ;;
    critest)
        # shellcheck source=scripts/conformance/critest.sh
        source "$REPO/scripts/conformance/critest.sh"
        ;;
esac

width=8
for t in "${TESTS[@]}"; do [ ${#t} -le "$width" ] || width=${#t}; done
printf "%-${width}s" test
for rt in "${RT_LIST[@]}"; do printf ' | %-20s' "$rt"; done
echo
for t in "${TESTS[@]}"; do
    printf "%-${width}s" "$t"
    for rt in "${RT_LIST[@]}"; do printf ' | %-20s' "${CELL[$t,$rt]}"; done
    echo
done
echo
print_summary

# The tests where the first runtime listed does worse than another.
first=${RT_LIST[0]}
for t in "${TESTS[@]}"; do
    better=()
    for rt in "${RT_LIST[@]:1}"; do
        if { [ "${STATUS[$t,$rt]}" = pass ] && [ "${STATUS[$t,$first]}" != pass ]; } ||
            { [[ ${STATUS[$t,$rt]} =~ ^(pass|fail)$ ]] && [[ ${STATUS[$t,$first]} =~ ^(pass|fail)$ ]] &&
                [ "${PASSN[$t,$rt]}" -gt "${PASSN[$t,$first]}" ]; }; then
            better+=("$rt ${CELL[$t,$rt]}")
        fi
    done
    if [ ${#better[@]} -gt 0 ]; then
        joined=$(IFS=,; echo "${better[*]}")
        printf 'behind %s: %s (%s) where %s\n' "$first" "$t" "${CELL[$t,$first]}" "${joined//,/, }"
    fi
done

if [ -n "$JSON" ]; then
    versions=()
    for rt in "${RT_LIST[@]}"; do
        versions+=("$(jq -cn --arg rt "$rt" --arg bin "${BIN[$rt]}" \
            --arg v "$("${BIN[$rt]}" --version 2>/dev/null | head -1)" '{($rt): {binary: $bin, version: $v}}')")
    done
    printf '%s\n' "${JSON_ROWS[@]}" | jq -s \
        --arg suite "$SUITE_KIND" --arg commit "$(git -C "$SUITE" rev-parse HEAD 2>/dev/null || echo unknown)" \
        --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --argjson runtimes "$(printf '%s\n' "${versions[@]}" | jq -s add)" \
        '{suite: $suite, commit: $commit, date: $date, runtimes: $runtimes, results: .}' >"$JSON"
fi

exit $LEFTOVERS
