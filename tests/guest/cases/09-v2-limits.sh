# The linux.resources fields beyond memory, cpu and pids, on cgroup v2, in the
# kernel's files while a bundle's container runs: cpuset cpus and mems,
# hugetlb, io.max throttles and a unified key; a page size the kernel lacks is
# refused naming the field. Nothing is left when it is deleted.
. "$GUEST_LIB"
fresh_root
disk_numbers
busybox_bundle
cp "$B/config.json" "$B/config.orig"

# The bundle asking for these resources.
bundle() {
  jq --arg cg "$GUEST_CGROUP_PARENT/limits-case" --argjson r "$1" \
    '.process.args = ["sleep", "600"] | .process.terminal = false | .linux.cgroupsPath = $cg
     | .linux.resources = $r' "$B/config.orig" > "$B/config.json"
}

bundle "{\"cpu\": {\"cpus\": \"0\", \"mems\": \"0\"},
         \"hugepageLimits\": [{\"pageSize\": \"2MB\", \"limit\": 4194304}],
         \"blockIO\": {\"throttleReadBpsDevice\": [{\"major\": $MAJ, \"minor\": $MIN, \"rate\": 1048576}]},
         \"unified\": {\"memory.high\": \"100000000\"}}"
ON_EXIT='xr delete --force lim > /dev/null 2>&1'
xr create -b "$B" lim > "$B/create.log" 2>&1 || fail "create: $(cat "$B/create.log")"
xr start lim
pid=$(xr state lim | jq -r .pid)
CG=$(cgroup_of "$pid")
expect_eq "cgroup" "$CG" "/sys/fs/cgroup$GUEST_CGROUP_PARENT/limits-case"
expect_eq "cpuset.cpus" "$(cat "$CG/cpuset.cpus")" 0
expect_eq "cpuset.mems" "$(cat "$CG/cpuset.mems")" 0
expect_eq "Cpus_allowed_list" "$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "/proc/$pid/status")" 0
expect_eq "hugetlb.2MB.max" "$(cat "$CG/hugetlb.2MB.max")" 4194304
expect_eq "io.max" "$(cat "$CG/io.max")" "$MAJ:$MIN rbps=1048576 wbps=max riops=max wiops=max"
expect_eq "memory.high" "$(cat "$CG/memory.high")" 99999744
xr delete --force lim
ON_EXIT=
[ ! -e "$CG" ] || fail "cgroup left behind: $CG"

bundle '{"hugepageLimits": [{"pageSize": "3MB", "limit": 4194304}]}'
code=0
out=$(xr create -b "$B" lim3 2>&1) || code=$?
expect_eq "exit status for a 3MB page size" "$code" 125
case $out in *linux.resources.hugepageLimits*) ok "refused naming the field: $out" ;; *) fail "refusal: $out" ;; esac
assert_no_leftovers
