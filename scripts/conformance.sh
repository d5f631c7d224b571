#!/usr/bin/env bash
# Conformance runner: runs a public OCI conformance suite, checked out and built
# elsewhere, against exprun, runc and crun in one run and prints per-test
# verdicts side by side. Not part of `cargo test` or CI (it takes minutes and
# needs the suite built). Run it as root. docs/oci-runtime.md ("Conformance")
# says how to get and build the suite.
#
# Usage: bash scripts/conformance.sh runtime-tools DIR [options]
#   DIR                  a built opencontainers/runtime-tools checkout (make
#                        runtimetest validation-executables)
#   --runtimes LIST      comma-separated, from exprun,runc,crun (default all three)
#   --only PATTERN       only tests whose name matches this extended regex
#   --timeout SECS       time limit per test and runtime (default 60)
#   --json FILE          also write the verdicts as JSON to FILE
#   --logs DIR           keep each run's TAP output and stderr under DIR
# Binaries: $EXPRUN (default target/debug/exprun under $CARGO_TARGET_DIR or
# ./target), $RUNC (default runc on PATH), $CRUN (default crun on PATH).
#
# Each test binary runs once per runtime, in its own `unshare --mount --ipc
# --uts --pid --fork --mount-proc`, with RUNTIME set to a wrapper that passes
# the runtime a private --root and TMPDIR set to a private temp dir. A cell of
# the table is PASS/FAIL counts of TAP points (a skipped point counts as
# neither), then "crash(exit N)" (no TAP point, or fewer than planned, or a
# non-zero exit with no failed point) or "timeout" where that happened; "exit 0"
# is a pass of a *_fail test (no TAP, exit 0: the runtime refused the config),
# "1..0" a test that planned no points and exited 0, "skip" one whose points
# all skipped.
# The summary counts the last two as skipped.
# Exit 0 when nothing was left behind, 1 otherwise (failing, crashing or
# timed-out tests do not change the exit status), 2 on bad usage. After the
# summary, a "behind" line names each test where the first runtime listed does
# worse than another (not a pass where the other's is, or, both having run to
# completion, fewer points passed).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    sed -n '8,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "conformance: $*" >&2
    exit 2
}

[ $# -ge 2 ] || usage
SUITE_KIND=$1 SUITE=$2
shift 2
[ "$SUITE_KIND" = runtime-tools ] || die "unknown suite '$SUITE_KIND': only runtime-tools is supported"
RUNTIMES=exprun,runc,crun ONLY='' TIMEOUT=60 JSON='' LOGS=
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
[ "$(id -u)" = 0 ] || die "needs root (the runtimes create namespaces and cgroups)"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, not '$TIMEOUT'"
SUITE_ARG=$SUITE
SUITE=$(cd "$SUITE" 2>/dev/null && pwd) || die "suite directory '$SUITE_ARG' does not exist"
if [ ! -x "$SUITE/runtimetest" ] || [ ! -f "$SUITE/rootfs-amd64.tar.gz" ] || [ ! -d "$SUITE/validation" ]; then
    die "$SUITE is not a built runtime-tools checkout: run 'make runtimetest validation-executables' there"
fi

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
done

mapfile -t TESTS < <(cd "$SUITE/validation" && find . -mindepth 2 -maxdepth 2 -name '*.t' -type f |
    sed 's|^\./||; s|/[^/]*\.t$||' | sort)
if [ -n "$ONLY" ]; then
    mapfile -t TESTS < <(printf '%s\n' "${TESTS[@]}" | grep -E -- "$ONLY" || true)
fi
[ ${#TESTS[@]} -gt 0 ] || die "no validation test binaries matched in $SUITE/validation"
if [ -n "$LOGS" ]; then
    mkdir -p "$LOGS"
    LOGS=$(cd "$LOGS" && pwd)
fi

WORK=$(mktemp -d /tmp/exprun-conformance.XXXXXX)
LEFTOVERS=0
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# Cgroup directories a run may make: the suite's fixed cgroupsPath names and
# those ending in the id of a container it created (runtimes name default
# cgroups after it: exprun "exprun-ID", runc and crun "ID"); the runtime
# wrapper logs each call's arguments to find the ids.
own_cgroups() {
    local ids
    ids=$(awk '$1 == "create" { print $NF }' "$1" 2>/dev/null | grep -E '^[A-Za-z0-9_-]+$' | paste -sd'|' || true)
    echo "/(cgrouptest|testdir${ids:+|[^/]*($ids)})(/|\$)"
}
cgroup_dirs() {
    find /sys/fs/cgroup -mindepth 2 -type d 2>/dev/null | LC_ALL=C sort
}

# Removes the cgroup directories the run $1 made: new since it started and
# named as above, deepest first. Prints any that cannot be removed.
remove_new_cgroups() {
    local run=$1 d
    LC_ALL=C comm -13 "$run/cgroups.before" <(cgroup_dirs) |
        { grep -E -- "$(own_cgroups "$run/calls")" || true; } | sort -r |
        while read -r d; do
            rmdir "$d" 2>/dev/null || [ ! -d "$d" ] || echo "$d"
        done
}

# The script that runs inside the namespaces: the test under its time limit,
# then delete --force of every container the runtime still lists under its
# root, while the pid namespace (and so the containers' processes) still exists.
# crun 1.8 refuses a hybrid host whose cgroup v2 hierarchy has controllers
# ("cgroups in hybrid mode not supported"); for crun on such a host the script
# unmounts /sys/fs/cgroup/unified in the private mount namespace first (the
# host keeps it), so crun uses the v1 hierarchies as runc and exprun do.
cat >"$WORK/inner.sh" <<'EOF'
#!/bin/bash
run=$1 limit=$2 tbin=$3 hide_cgroup2=$4
if [ "$hide_cgroup2" = 1 ]; then
    umount /sys/fs/cgroup/unified || exit 3
fi
timeout -k 5 "$limit" "$tbin" >"$run/tap" 2>"$run/stderr"
rc=$?
for id in $("$run/runtime" list -q 2>>"$run/cleanup"); do
    "$run/runtime" delete --force "$id" >/dev/null 2>>"$run/cleanup" || true
done
"$run/runtime" list -q >"$run/left" 2>>"$run/cleanup"
exit $rc
EOF

hide_cgroup2() {
    if [ "$1" = crun ] && [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] &&
        [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers)" ]; then
        echo 1
    else
        echo 0
    fi
}

# Prints "pass fail skip todo planned points" for a TAP file.
tap_counts() {
    awk '
        /^1\.\.[0-9]+/ { split($0, p, /\.\.|[ \t]/); plan = p[2] + 0 }
        /^(not )?ok( |$)/ {
            points++
            directive = tolower($0)
            if (directive ~ /#[ \t]*skip/) skip++
            else if (directive ~ /#[ \t]*todo/) todo++
            else if ($0 ~ /^not ok/) fail++
            else pass++
        }
        END { printf "%d %d %d %d %d %d\n", pass, fail, skip, todo, (plan == "" ? -1 : plan), points }
    ' "$1"
}

# Prints "STATUS CELL" for a run from its exit status and TAP counts.
verdict() {
    local rc=$1 pass=$2 fail=$3 skip=$4 plan=$5 points=$6
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "timeout $pass/$fail timeout"
    elif [ "$points" = 0 ] && [ "$plan" = -1 ] && [ "$rc" = 0 ]; then
        # The *_fail tests' convention: the runtime refused the config as it
        # must, and the test exits 0 without TAP.
        echo "pass exit 0"
    elif [ "$points" = 0 ] && [ "$plan" = 0 ] && [ "$rc" = 0 ]; then
        echo "empty 1..0"
    elif [ "$points" -gt 0 ] && [ "$skip" = "$points" ]; then
        echo "skip skip"
    elif [ "$points" = 0 ] || { [ "$plan" -ge 0 ] && [ "$points" -lt "$plan" ]; } ||
        { [ "$rc" != 0 ] && [ "$fail" = 0 ]; }; then
        echo "crash $pass/$fail crash(exit $rc)"
    elif [ "$fail" -gt 0 ]; then
        echo "fail $pass/$fail"
    else
        echo "pass $pass/$fail"
    fi
}

declare -A CELL STATUS PASSN
# Summary counters per runtime.
declare -A S_PASS S_FAIL S_CRASH S_TIMEOUT S_SKIP P_PASS P_FAIL
for rt in "${RT_LIST[@]}"; do
    S_PASS[$rt]=0 S_FAIL[$rt]=0 S_CRASH[$rt]=0 S_TIMEOUT[$rt]=0 S_SKIP[$rt]=0 P_PASS[$rt]=0 P_FAIL[$rt]=0
done
JSON_ROWS=()

for t in "${TESTS[@]}"; do
    for rt in "${RT_LIST[@]}"; do
        run="$WORK/$rt/$t"
        mkdir -p "$run/root" "$run/tmp"
        printf '#!/bin/sh\necho "$*" >>%q\nexec %q --root %q "$@"\n' "$run/calls" "${BIN[$rt]}" "$run/root" >"$run/runtime"
        chmod +x "$run/runtime"
        cgroup_dirs >"$run/cgroups.before"
        set +e
        (cd "$SUITE" && RUNTIME="$run/runtime" TMPDIR="$run/tmp" \
            timeout -k 5 $((TIMEOUT + 60)) \
            unshare --mount --ipc --uts --pid --fork --mount-proc \
            bash "$WORK/inner.sh" "$run" "$TIMEOUT" "$SUITE/validation/$t/$t.t" "$(hide_cgroup2 "$rt")")
        rc=$?
        set -e
        if [ -s "$run/left" ]; then
            echo "conformance: $t under $rt left containers that delete --force did not remove:" \
                "$(tr '\n' ' ' <"$run/left")" >&2
            LEFTOVERS=1
        fi
        left=$(remove_new_cgroups "$run")
        if [ -n "$left" ]; then
            echo "conformance: $t under $rt left cgroups that cannot be removed: $left" >&2
            LEFTOVERS=1
        fi
        read -r pass fail skip todo plan points < <(tap_counts "$run/tap")
        read -r status cell < <(verdict "$rc" "$pass" "$fail" "$skip" "$plan" "$points")
        CELL[$t,$rt]=$cell
        STATUS[$t,$rt]=$status
        PASSN[$t,$rt]=$pass
        case $status in
            pass) S_PASS[$rt]=$((S_PASS[$rt] + 1)) ;;
            fail) S_FAIL[$rt]=$((S_FAIL[$rt] + 1)) ;;
            crash) S_CRASH[$rt]=$((S_CRASH[$rt] + 1)) ;;
            timeout) S_TIMEOUT[$rt]=$((S_TIMEOUT[$rt] + 1)) ;;
            skip | empty) S_SKIP[$rt]=$((S_SKIP[$rt] + 1)) ;;
        esac
        P_PASS[$rt]=$((P_PASS[$rt] + pass))
        P_FAIL[$rt]=$((P_FAIL[$rt] + fail))
        JSON_ROWS+=("$(jq -cn --arg test "$t" --arg runtime "$rt" --arg status "$status" \
            --argjson pass "$pass" --argjson fail "$fail" --argjson skip "$skip" --argjson todo "$todo" \
            --argjson plan "$plan" --argjson exit "$rc" \
            '{test: $test, runtime: $runtime, status: $status, pass: $pass, fail: $fail,
              skip: $skip, todo: $todo, plan: (if $plan < 0 then null else $plan end), exit: $exit}')")
        if [ -n "$LOGS" ]; then
            mkdir -p "$LOGS/$rt"
            cp "$run/tap" "$LOGS/$rt/$t.tap"
            cat "$run/stderr" "$run/cleanup" 2>/dev/null >"$LOGS/$rt/$t.stderr" || true
        fi
        rm -rf "$run"
        printf '.' >&2
    done
done
echo >&2

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
for rt in "${RT_LIST[@]}"; do
    printf 'summary %s: %d tests: %d pass, %d fail, %d crash, %d timeout, %d skip; TAP points: %d ok, %d not ok\n' \
        "$rt" ${#TESTS[@]} "${S_PASS[$rt]}" "${S_FAIL[$rt]}" "${S_CRASH[$rt]}" "${S_TIMEOUT[$rt]}" \
        "${S_SKIP[$rt]}" "${P_PASS[$rt]}" "${P_FAIL[$rt]}"
done

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
