# runtime-tools mode of scripts/conformance.sh (sourced by it): each
# validation/*/*.t of a built opencontainers/runtime-tools checkout once per
# runtime, from the checkout (the tests find runtimetest and the rootfs tarball
# there), with RUNTIME set to the wrapper, which gives the runtime a private
# --root, and TMPDIR a private temp dir. A cell of the table is PASS/FAIL
# counts of TAP points (a skipped point counts as neither), then
# "crash(exit N)" (no TAP point, or fewer than planned, or a non-zero exit with
# no failed point) or "timeout" where that happened; "exit 0" is a pass of a
# *_fail test (no TAP, exit 0: the runtime refused the config), "1..0" a test
# that planned no points and exited 0, "skip" one whose points all skipped.
# The summary counts the last two as skipped. The "behind" lines also name a
# test where, both having run to completion, the first runtime passed fewer
# points.

if [ ! -x "$SUITE/runtimetest" ] || [ ! -f "$SUITE/rootfs-amd64.tar.gz" ] || [ ! -d "$SUITE/validation" ]; then
    die "$SUITE is not a built runtime-tools checkout: build it with 'make runtimetest validation-executables' there (docs/oci-runtime.md, Conformance)"
fi

mapfile -t TESTS < <(cd "$SUITE/validation" && find . -mindepth 2 -maxdepth 2 -name '*.t' -type f |
    sed 's|^\./||; s|/[^/]*\.t$||' | sort)
if [ -n "$ONLY" ]; then
    mapfile -t TESTS < <(printf '%s\n' "${TESTS[@]}" | grep -E -- "$ONLY" || true)
fi
[ ${#TESTS[@]} -gt 0 ] || die "no validation test binaries matched in $SUITE/validation"

# The script that runs inside the namespaces: the test under its time limit,
# then delete --force of every container the runtime still lists under its
# root, while the pid namespace (and so the containers' processes) still exists.
cat >"$WORK/inner-runtime-tools.sh" <<'EOF'
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

# Summary counters per runtime.
declare -A S_PASS S_FAIL S_CRASH S_TIMEOUT S_SKIP P_PASS P_FAIL
for rt in "${RT_LIST[@]}"; do
    S_PASS[$rt]=0 S_FAIL[$rt]=0 S_CRASH[$rt]=0 S_TIMEOUT[$rt]=0 S_SKIP[$rt]=0 P_PASS[$rt]=0 P_FAIL[$rt]=0
done

for t in "${TESTS[@]}"; do
    for rt in "${RT_LIST[@]}"; do
        run="$WORK/$rt/$t"
        mkdir -p "$run/root" "$run/tmp"
        make_wrapper "$run" "${BIN[$rt]}" --root "$run/root"
        begin_run "$run" 'cgrouptest|testdir' "$t under $rt"
        rc=0
        run_child env -C "$SUITE" RUNTIME="$run/runtime" TMPDIR="$run/tmp" \
            timeout -k 5 $((TIMEOUT + 60)) \
            unshare --mount --ipc --uts --pid --fork --kill-child --mount-proc \
            bash "$WORK/inner-runtime-tools.sh" "$run" "$TIMEOUT" "$SUITE/validation/$t/$t.t" "$(hide_cgroup2 "$rt")" ||
            rc=$?
        if [ -s "$run/left" ]; then
            echo "conformance: $t under $rt left containers that delete --force did not remove:" \
                "$(tr '\n' ' ' <"$run/left")" >&2
            LEFTOVERS=1
        fi
        end_run
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

print_summary() {
    local rt
    for rt in "${RT_LIST[@]}"; do
        printf 'summary %s: %d tests: %d pass, %d fail, %d crash, %d timeout, %d skip; TAP points: %d ok, %d not ok\n' \
            "$rt" ${#TESTS[@]} "${S_PASS[$rt]}" "${S_FAIL[$rt]}" "${S_CRASH[$rt]}" "${S_TIMEOUT[$rt]}" \
            "${S_SKIP[$rt]}" "${P_PASS[$rt]}" "${P_FAIL[$rt]}"
    done
}
