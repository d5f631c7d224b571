# critest mode of scripts/conformance.sh (sourced by it): kubernetes-sigs/
# cri-tools' critest (the validation specs, not the benchmarks) against a
# private containerd per runtime: its own config, root, state and sockets
# under the run's temp dir, one runtime handler (the runc v2 shim with
# BinaryName the runtime's wrapper), and registry.k8s.io and gcr.io mirrored
# to a registry on 127.0.0.1 that serves the images critest pulls, built
# offline by critest_images.py from the repository's busybox fixture (the
# tests that need other images fail under every runtime: docs/oci-runtime.md
# lists them). The registry, containerd and critest run in one `unshare
# --mount --net --pid --fork --kill-child --mount-proc`: the pods' CNI bridge
# and addresses are in that network namespace, not the host's, and when
# critest ends the namespace's init exits and takes the registry, containerd,
# the shims and the containers with it; the mounts go with the mount
# namespace.
# A cell is "ok", "not ok" (failed, panicked, timed out), "skipped", or
# "missing" where the run reported no verdict (it crashed or ran out of time).
# --only is a ginkgo focus regex.

CRITEST=$SUITE/build/bin/linux/amd64/critest
[ -x "$CRITEST" ] || die "$SUITE has no build/bin/linux/amd64/critest: not a built cri-tools checkout; build it with
  PATH=/usr/lib/go-1.19/bin:\$PATH GOFLAGS=-mod=vendor make critest
in a checkout of v1.26.1 (docs/oci-runtime.md, Conformance)"
CONTAINERD=${CONTAINERD:-$(command -v containerd || true)}
for cmd in "$CONTAINERD" containerd-shim-runc-v2 docker-registry skopeo python3 jq; do
    [ -n "$cmd" ] && command -v "$cmd" >/dev/null ||
        die "critest needs ${cmd:-containerd}: apt-get install -y containerd docker-registry skopeo python3 jq"
done
FIXTURE=${EXPRUN_TEST_FIXTURES:-$REPO/rootfs-fixtures/out}/busybox-oci
[ -f "$FIXTURE/index.json" ] || die "no busybox fixture at $FIXTURE: build it with 'bash rootfs-fixtures/build.sh'"

# The registry, its storage in the temp dir: on a free port of the host while
# skopeo pushes the images, then inside each run's network namespace.
REG=$WORK/registry
mkdir -p "$REG"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$REG/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $REG/storage
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$REG/config.yml" >"$REG/log" 2>&1 &
REG_PID=$!
CLEANUP+=("kill $REG_PID 2>/dev/null; wait $REG_PID 2>/dev/null")
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break
    sleep 0.1
done
echo "conformance: building critest's images into the registry on 127.0.0.1:$PORT" >&2
python3 "$REPO/scripts/conformance/critest_images.py" "$FIXTURE" "$REG/layout" >"$REG/images"
while read -r ref name; do
    skopeo copy -q --dest-tls-verify=false "oci:$REG/layout:$ref" "docker://127.0.0.1:$PORT/$name" ||
        die "could not push $name to the local registry: $(cat "$REG/log")"
done <"$REG/images"
kill "$REG_PID"
wait "$REG_PID" 2>/dev/null || true

# Inside the namespaces: the registry and containerd, then critest once
# containerd's socket is there.
cat >"$WORK/inner-critest.sh" <<'EOF'
#!/bin/bash
run=$1 limit=$2 critest=$3 containerd=$4 hide_cgroup2=$5 focus=$6 registry=$7
if [ "$hide_cgroup2" = 1 ]; then
    umount /sys/fs/cgroup/unified || exit 3
fi
ip link set lo up || exit 3
docker-registry serve "$registry/config.yml" >"$run/registry.log" 2>&1 &
EXPRUN_CONFIG=$run/exprun.toml "$containerd" --config "$run/config.toml" >"$run/containerd.log" 2>&1 &
for _ in $(seq 200); do
    [ -S "$run/containerd.sock" ] && break
    sleep 0.1
done
[ -S "$run/containerd.sock" ] || { echo "containerd did not come up" >>"$run/stderr"; exit 3; }
cd "$run" || exit 3
args=(--runtime-endpoint "unix://$run/containerd.sock" --image-endpoint "unix://$run/containerd.sock"
    -ginkgo.json-report "$run/report.json" -ginkgo.no-color)
[ -z "$focus" ] || args+=(-ginkgo.focus "$focus")
TMPDIR=$run/tmp timeout -k 5 "$limit" "$critest" "${args[@]}" >"$run/out" 2>"$run/stderr"
EOF

for rt in "${RT_LIST[@]}"; do
    run="$WORK/$rt"
    mkdir -p "$run/cni" "$run/tmp"
    make_wrapper "$run" "${BIN[$rt]}"
    # A bridge in the run's own network namespace; containerd adds loopback.
    cat >"$run/cni/10-critest.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "critest", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$run/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
    printf '[records]\nroot = "%s"\n' "$run/exprun-records" >"$run/exprun.toml"
    cri='plugins."io.containerd.grpc.v1.cri"'
    cat >"$run/config.toml" <<EOF
version = 2
root = "$run/root"
state = "$run/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
[$cri]
  sandbox_image = "registry.k8s.io/pause:3.6"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which root may lack.
  restrict_oom_score_adj = true
  [$cri.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "$rt"
    [$cri.containerd.runtimes.$rt]
      runtime_type = "io.containerd.runc.v2"
      [$cri.containerd.runtimes.$rt.options]
        BinaryName = "$run/runtime"
        Root = "$run/runtime-root"
  [$cri.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$run/cni"
  [$cri.registry.mirrors."registry.k8s.io"]
    endpoint = ["http://127.0.0.1:$PORT"]
  [$cri.registry.mirrors."gcr.io"]
    endpoint = ["http://127.0.0.1:$PORT"]
EOF
    begin_run "$run" 'k8s\.io' "critest under $rt"
    echo "conformance: critest under $rt" >&2
    rc=0
    run_child timeout -k 5 $((TIMEOUT + 60)) unshare --mount --net --pid --fork --kill-child --mount-proc \
        bash "$WORK/inner-critest.sh" "$run" "$TIMEOUT" "$CRITEST" "$CONTAINERD" "$(hide_cgroup2 "$rt")" "$ONLY" "$REG" ||
        rc=$?
    RUN_EXIT+=("critest under $rt: exit $rc")
    end_run
    if [ -f "$run/report.json" ]; then
        while IFS=$'\t' read -r t v; do
            case $v in
                passed) record_verdict "$t" "$rt" pass ok ;;
                skipped | pending) record_verdict "$t" "$rt" skip skipped ;;
                *) record_verdict "$t" "$rt" fail "not ok" ;;
            esac
        done < <(jq -r '.[].SpecReports[] | select(.LeafNodeType == "It")
            | [((.ContainerHierarchyTexts // []) + [.LeafNodeText] | join(" ")), .State] | @tsv' "$run/report.json")
    fi
    if [ -n "$LOGS" ]; then
        for f in out stderr report.json containerd.log; do
            [ ! -f "$run/$f" ] || cp "$run/$f" "$LOGS/critest-$rt.$f"
        done
    fi
    rm -rf "$run/root" "$run/tmp"
done
finish_verdicts

print_summary() {
    verdict_summary
}
