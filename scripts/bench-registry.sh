#!/usr/bin/env bash
# Pull and push benchmark against a local registry, measured by hyperfine in
# the same run: exprun pull (into a fresh store: download, verify, unpack)
# against skopeo copy followed by umoci raw unpack (the same work, by the tools
# podman is built from), and skopeo copy alone (download only) for scale;
# exprun push against skopeo copy to the registry.
#
# Usage: bash scripts/bench-registry.sh [--runs N] [--layer-mib M]
#   --runs N        timed runs per command (default 10)
#   --layer-mib M   size of each of the 4 layers before gzip (default 64)
#
# Environment: EXPRUN_BIN  exprun binary (default: the release build of
#   scripts/build-release.sh).
# Needs root (the store keeps the layers' owners). Installs docker-registry,
# skopeo, umoci, hyperfine and python3 if missing. The registry runs on 127.0.0.1 with
# its config and storage in one temp dir; it is stopped by pid and the dir
# removed on every exit path.
set -euo pipefail

RUNS=10
LAYER_MIB=64
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$SCRIPT_DIR/.." && pwd -P)

log() { printf 'bench-registry: %s\n' "$*" >&2; }
die() { printf 'bench-registry: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --runs) [ $# -ge 2 ] || die "--runs needs a number"; RUNS=$2; shift ;;
        --layer-mib) [ $# -ge 2 ] || die "--layer-mib needs a number"; LAYER_MIB=$2; shift ;;
        -h|--help) sed -n '7,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
case $RUNS in ''|*[!0-9]*|0) die "--runs wants a positive integer, got '$RUNS'" ;; esac
case $LAYER_MIB in ''|*[!0-9]*|0) die "--layer-mib wants a positive integer, got '$LAYER_MIB'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root"

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v umoci >/dev/null || need+=(umoci)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -z "${EXPRUN_BIN:-}" ]; then
    EXPRUN_BIN=$(bash "$REPO/scripts/build-release.sh")
fi
[ -x "$EXPRUN_BIN" ] || die "EXPRUN_BIN=$EXPRUN_BIN is not executable"

T=$(mktemp -d /tmp/exprun-bench-registry.XXXXXX)
REG_PID=''
cleanup() {
    # Under set -e a failing last command here would skip the rm: the stopped
    # registry's wait status is never 0.
    if [ -n "$REG_PID" ]; then
        kill "$REG_PID" 2>/dev/null || true
        wait "$REG_PID" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$T/config.yml" >"$T/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break
    sleep 0.1
done

# The image: 4 gzip'd layers of LAYER_MIB MiB each, of words from a fixed
# seed (gzip takes them to 45%).
log "making a 4 x $LAYER_MIB MiB image"
python3 - "$T/layout" "$LAYER_MIB" <<'EOF'
import gzip, hashlib, io, json, os, random, sys, tarfile
out, mib = sys.argv[1], int(sys.argv[2])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(os.path.join(blobs, d), "wb").write(b)
    return "sha256:" + d
rng = random.Random(7)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(4096)]
layers, diff_ids = [], []
for i in range(4):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for f in range(mib):
            data = b" ".join(rng.choice(words) for _ in range(190000))[: 1 << 20]
            info = tarfile.TarInfo(f"layer{i}/file{f}")
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    z = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(z), "size": len(z)})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
                       "layers": layers}).encode()
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": put(manifest), "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "1"}}]}
json.dump(index, open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
REF=127.0.0.1:$PORT/bench/img:1
"$EXPRUN_BIN" --root "$T/src" image import --quiet --name bench:1 "$T/layout" >/dev/null
"$EXPRUN_BIN" --root "$T/src" push -q bench:1 "$REF" >/dev/null
log "exprun $("$EXPRUN_BIN" --version | cut -d' ' -f2), skopeo $(skopeo --version | cut -d' ' -f3), $(nproc) CPUs"

hyperfine -N --style basic --warmup 1 --runs "$RUNS" --export-json "$T/pull.json" \
    --prepare "rm -rf $T/dst $T/sk $T/bundle" \
    -n 'exprun pull' "$EXPRUN_BIN --root $T/dst pull -q $REF" \
    -n 'exprun pull --jobs 1' "$EXPRUN_BIN --root $T/dst pull -q --jobs 1 $REF" \
    -n 'skopeo copy + umoci raw unpack' \
    "sh -c 'skopeo copy -q --src-tls-verify=false docker://$REF oci:$T/sk:1 && umoci raw unpack --image $T/sk:1 $T/bundle'" \
    -n 'skopeo copy (download only)' "skopeo copy -q --src-tls-verify=false docker://$REF oci:$T/sk:1" \
    2>/dev/null | grep -v '^ *Range' || true
# Push: the registry's storage is emptied before each run, so it has none of
# the blobs (and none to mount from another repository).
hyperfine -N --style basic --warmup 1 --runs "$RUNS" --export-json "$T/push.json" \
    --prepare "rm -rf $T/registry" \
    -n 'exprun push' "$EXPRUN_BIN --root $T/src push -q bench:1 $REF" \
    -n 'skopeo copy (upload)' "skopeo copy -q --dest-tls-verify=false oci:$T/layout:1 docker://$REF" \
    2>/dev/null | grep -v '^ *Range' || true

python3 - "$T/pull.json" "$T/push.json" <<'EOF'
import json, sys
for path, ours, theirs in ((sys.argv[1], "exprun pull", "skopeo copy + umoci raw unpack"),
                           (sys.argv[2], "exprun push", "skopeo copy (upload)")):
    r = {x["command"]: x for x in json.load(open(path))["results"]}
    for name, x in r.items():
        print(f"{name:34s} median {x['median']*1000:8.1f} ms")
    print(f"ratio {ours} / {theirs}: {r[ours]['median'] / r[theirs]['median']:.2f}")
EOF
