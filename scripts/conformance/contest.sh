# contest mode of scripts/conformance.sh (sourced by it): youki's
# tests/contest, built out of tree into DIR/bin (contest, and runtimetest
# linked statically: it runs inside the containers), run once per test group
# (`contest run -t GROUP`) and runtime, each under the time limit (a group can
# hang: one whose runtime never sends what the test waits for), from a private
# directory holding the suite's bundle.tar.gz, with TMPDIR (the bundles and
# the runtime's --root, which contest passes itself) private and a private
# tmpfs on /tmp (contest writes fixed names there: its seccomp agent's socket,
# the mount tests' directories). contest prints "N / M : test : ok | skipped |
# not ok" per test; a cell is "ok", "not ok", "skipped", or "missing" where the
# runtime's run printed no verdict for the test; a group that printed none
# has one row GROUP::* whose cell is "timeout" or "crash(exit N)". --only
# selects groups by an extended regex on the names `contest list` prints.

for f in bin/contest bin/runtimetest tests/contest/contest/bundle.tar.gz; do
    [ -e "$SUITE/$f" ] || die "$SUITE has no $f: not a youki checkout with contest built; build it with
  cargo build --bin contest && RUSTFLAGS=-Ctarget-feature=+crt-static cargo build --target x86_64-unknown-linux-gnu --bin runtimetest
and copy both into $SUITE/bin (docs/oci-runtime.md, Conformance)"
done

mapfile -t CT_GROUPS < <(cd "$SUITE/tests/contest/contest" && TMPDIR=$WORK "$SUITE/bin/contest" list |
    grep -E -- "${ONLY:-.}" || true)
[ ${#CT_GROUPS[@]} -gt 0 ] || die "no contest test group matches '$ONLY' (see $SUITE/bin/contest list)"

# Inside the namespaces: contest under its time limit. Containers a test left
# behind die with the pid namespace; their cgroups are removed outside.
cat >"$WORK/inner-contest.sh" <<'EOF'
#!/bin/bash
run=$1 limit=$2 suite=$3 hide_cgroup2=$4 group=$5
if [ "$hide_cgroup2" = 1 ]; then
    umount /sys/fs/cgroup/unified || exit 3
fi
mount -t tmpfs -o mode=1777 conformance-tmp /tmp || exit 3
cd "$run/cwd" || exit 3
timeout -k 5 "$limit" "$suite/bin/contest" run --runtime "$run/runtime" \
    --runtimetest "$suite/bin/runtimetest" -t "$group" >"$run/out.$group" 2>"$run/stderr.$group"
EOF

# Prints "test<TAB>verdict" per test from contest's output, test as GROUP::NAME.
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
            print group "::" name "\t" verdict
        }
    ' "$1"
}

for rt in "${RT_LIST[@]}"; do
    run="$WORK/$rt"
    mkdir -p "$run/cwd" "$run/tmp"
    cp "$SUITE/tests/contest/contest/bundle.tar.gz" "$run/cwd/"
    make_wrapper "$run" "${BIN[$rt]}"
    echo "conformance: contest under $rt" >&2
    for g in "${CT_GROUPS[@]}"; do
        begin_run "$run" 'runtime-test' "contest $g under $rt"
        rc=0
        run_child env TMPDIR="$run/tmp" timeout -k 5 $((TIMEOUT + 60)) \
            unshare --mount --ipc --uts --pid --fork --kill-child --mount-proc \
            bash "$WORK/inner-contest.sh" "$run" "$TIMEOUT" "$SUITE" "$(hide_cgroup2 "$rt")" "$g" || rc=$?
        end_run
        if grep -q "^# Start group " "$run/out.$g"; then
            while IFS=$'\t' read -r t v; do
                case $v in
                    ok) record_verdict "$t" "$rt" pass ok ;;
                    not_ok) record_verdict "$t" "$rt" fail "not ok" ;;
                    *) record_verdict "$t" "$rt" skip "${v//_/ }" ;;
                esac
            done < <(contest_verdicts "$run/out.$g")
        elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            record_verdict "$g::*" "$rt" timeout timeout
        else
            record_verdict "$g::*" "$rt" crash "crash(exit $rc)"
        fi
        if [ -n "$LOGS" ]; then
            cat "$run/out.$g" >>"$LOGS/contest-$rt.out" 2>/dev/null || true
            cat "$run/stderr.$g" >>"$LOGS/contest-$rt.stderr" 2>/dev/null || true
        fi
        rm -rf "$run/tmp"
        mkdir "$run/tmp"
        printf '.' >&2
    done
    echo >&2
done
finish_verdicts

print_summary() {
    verdict_summary
}
