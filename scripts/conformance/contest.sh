# contest mode of scripts/conformance.sh (sourced by it): youki's
# tests/contest, built out of tree into DIR/bin (contest, and runtimetest
# linked statically: it runs inside the containers), run once per runtime
# from a private directory holding the suite's bundle.tar.gz, with TMPDIR (the
# bundles and the runtime's --root, which contest passes itself) private too.
# contest runs its test groups in parallel threads and prints "N / M : test :
# ok | skipped | not ok" per test; a cell is "ok", "not ok", "skipped", or
# "missing" where the run printed no verdict for the test (it crashed or timed
# out). --only selects test groups (contest -t GROUP...) by an extended regex
# on the names `contest list` prints.

for f in bin/contest bin/runtimetest tests/contest/contest/bundle.tar.gz; do
    [ -e "$SUITE/$f" ] || die "$SUITE has no $f: not a youki checkout with contest built; build it with
  cargo build --bin contest && RUSTFLAGS=-Ctarget-feature=+crt-static cargo build --target x86_64-unknown-linux-gnu --bin runtimetest
and copy both into $SUITE/bin (docs/oci-runtime.md, Conformance)"
done

CT_GROUPS=()
if [ -n "$ONLY" ]; then
    mapfile -t CT_GROUPS < <(cd "$SUITE/tests/contest/contest" && TMPDIR=$WORK "$SUITE/bin/contest" list |
        grep -E -- "$ONLY" || true)
    [ ${#CT_GROUPS[@]} -gt 0 ] || die "no contest test group matches '$ONLY' (see $SUITE/bin/contest list)"
fi

# Inside the namespaces: contest under its time limit. Containers a test left
# behind die with the pid namespace; their cgroups are removed outside.
cat >"$WORK/inner-contest.sh" <<'EOF'
#!/bin/bash
run=$1 limit=$2 suite=$3 hide_cgroup2=$4
shift 4
if [ "$hide_cgroup2" = 1 ]; then
    umount /sys/fs/cgroup/unified || exit 3
fi
cd "$run/cwd" || exit 3
groups=()
[ $# -eq 0 ] || groups=(-t "$@")
timeout -k 5 "$limit" "$suite/bin/contest" run --runtime "$run/runtime" \
    --runtimetest "$suite/bin/runtimetest" "${groups[@]}" >"$run/out" 2>"$run/stderr"
EOF

# Prints "test verdict" per test from contest's output, test as GROUP::NAME.
contest_verdicts() {
    awk '
        /^# Start group / { group = $4 }
        /^[0-9]+ \/ [0-9]+ : / {
            line = $0
            sub(/^[0-9]+ \/ [0-9]+ : /, "", line)
            n = split(line, parts, " : ")
            verdict = parts[n]
            name = substr(line, 1, length(line) - length(verdict) - 3)
            gsub(/ /, "_", verdict)
            print group "::" name, verdict
        }
    ' "$1"
}

for rt in "${RT_LIST[@]}"; do
    run="$WORK/$rt"
    mkdir -p "$run/cwd" "$run/tmp"
    cp "$SUITE/tests/contest/contest/bundle.tar.gz" "$run/cwd/"
    make_wrapper "$run" "${BIN[$rt]}"
    cgroup_dirs >"$run/cgroups.before"
    echo "conformance: contest under $rt" >&2
    set +e
    TMPDIR="$run/tmp" timeout -k 5 $((TIMEOUT + 60)) \
        unshare --mount --ipc --uts --pid --fork --kill-child --mount-proc \
        bash "$WORK/inner-contest.sh" "$run" "$TIMEOUT" "$SUITE" "$(hide_cgroup2 "$rt")" "${CT_GROUPS[@]}"
    rc=$?
    set -e
    RUN_EXIT+=("contest under $rt: exit $rc")
    check_cgroups "$run" 'runtime-test' "contest under $rt"
    while read -r t v; do
        case $v in
            ok) record_verdict "$t" "$rt" pass ok ;;
            not_ok) record_verdict "$t" "$rt" fail "not ok" ;;
            *) record_verdict "$t" "$rt" skip "${v//_/ }" ;;
        esac
    done < <(contest_verdicts "$run/out")
    if [ -n "$LOGS" ]; then
        cp "$run/out" "$LOGS/contest-$rt.out"
        cp "$run/stderr" "$LOGS/contest-$rt.stderr"
    fi
    rm -rf "$run/tmp"
done
finish_verdicts

print_summary() {
    verdict_summary
}
