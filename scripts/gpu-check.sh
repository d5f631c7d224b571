#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the busybox fixture image, with nothing of
# the driver in it, gets the GPU and the driver's files from a CDI spec this
# script writes from what the machine has (the GPU and control nodes,
# nvidia-smi and the libraries it loads), and runs nvidia-smi inside with
# `exprun run --gpus all` and `--device nvidia.com/gpu=0`. Prints what
# nvidia-smi said in the container and the GPUs the run's record names.
#
# Usage: bash scripts/gpu-check.sh
# Environment: EXPRUN_BIN  the exprun binary (default: target/debug/exprun,
#   else target/release/exprun).
# Needs root, python3, ldd. Exits 2 when the machine has no NVIDIA GPU node or
# no nvidia-smi. Everything it makes lives in one temp dir, removed on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
log() { printf 'gpu-check: %s\n' "$*" >&2; }
# die MESSAGE [STATUS]
die() { printf 'gpu-check: error: %s\n' "$1" >&2; exit "${2:-1}"; }

EXPRUN=${EXPRUN_BIN:-}
for c in "$REPO/target/debug/exprun" "$REPO/target/release/exprun"; do
    [ -n "$EXPRUN" ] || { [ -x "$c" ] && EXPRUN=$c; }
done
[ -n "$EXPRUN" ] && [ -x "$EXPRUN" ] || die "no exprun binary (cargo build, or set EXPRUN_BIN)"
[ "$(id -u)" -eq 0 ] || die "must run as root"
FIXTURE=$REPO/rootfs-fixtures/out/busybox-oci
[ -d "$FIXTURE" ] || bash "$REPO/rootfs-fixtures/build.sh" >/dev/null
[ -d "$FIXTURE" ] || die "no busybox fixture at $FIXTURE"

shopt -s nullglob
gpus=(/dev/nvidia[0-9]*)
[ ${#gpus[@]} -gt 0 ] || die "no NVIDIA GPU node (/dev/nvidia0, ...) on this machine" 2
SMI=$(command -v nvidia-smi || true)
[ -n "$SMI" ] || die "no nvidia-smi on PATH" 2
SMI=$(readlink -f "$SMI")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/exprun-gpu-check.XXXXXX")
trap 'rm -rf --one-file-system "$TMP"' EXIT
mkdir "$TMP/cdi"

# The files nvidia-smi needs in a container that has no glibc: what ldd
# lists, plus the driver's libraries it loads at run time.
files=("$SMI")
while read -r f; do files+=("$f"); done < <(ldd "$SMI" | grep -o '/[^ ]*' | sort -u)
while read -r f; do files+=("$f"); done < <(
    ldconfig -p | awk '$1 ~ /^lib(nvidia-ml|cuda)\.so\.1$/ { print $NF }' | sort -u)

python3 - "$TMP/cdi/nvidia.json" "${#gpus[@]}" "${files[@]}" <<'EOF'
import json, os, sys
out, n, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
gpu_nodes = sorted(p for p in os.listdir('/dev') if p.startswith('nvidia') and p[6:].isdigit())
control = [f'/dev/{p}' for p in ('nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools') if os.path.exists(f'/dev/{p}')]
devices = [{'name': p[6:], 'containerEdits': {'deviceNodes': [{'path': f'/dev/{p}'}]}} for p in gpu_nodes]
devices.append({'name': 'all', 'containerEdits': {'deviceNodes': [{'path': f'/dev/{p}'} for p in gpu_nodes]}})
mounts = []
for f in files:
    real = os.path.realpath(f)
    dst = '/usr/bin/nvidia-smi' if f == files[0] else f
    mounts.append({'hostPath': real, 'containerPath': dst, 'options': ['ro', 'nosuid', 'nodev', 'bind']})
libdirs = sorted({os.path.dirname(f) for f in files[1:]})
spec = {
    'cdiVersion': '0.6.0',
    'kind': 'nvidia.com/gpu',
    'devices': devices,
    'containerEdits': {
        'deviceNodes': [{'path': p} for p in control],
        'mounts': mounts,
        'env': ['LD_LIBRARY_PATH=' + ':'.join(libdirs)],
    },
}
json.dump(spec, open(out, 'w'), indent=1)
EOF
log "CDI spec written from this machine: ${#gpus[@]} GPU node(s), ${#files[@]} files"

x() { "$EXPRUN" --root "$TMP/root" "$@"; }
x image import --name busybox:latest "$FIXTURE" >/dev/null
status=0
echo "== exprun run --gpus all busybox -- nvidia-smi -L"
x run --cdi-spec-dir "$TMP/cdi" --gpus all busybox:latest -- /usr/bin/nvidia-smi -L || status=1
echo "== exprun run --device nvidia.com/gpu=0 busybox -- nvidia-smi --query-gpu=..."
x run --cdi-spec-dir "$TMP/cdi" --device nvidia.com/gpu=0 busybox:latest -- /usr/bin/nvidia-smi \
    --query-gpu=name,uuid,pci.bus_id,driver_version --format=csv || status=1
echo "== the record's GPUs and the pins of the last run"
x runs show --latest --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps(r.get("gpus", []), indent=1))
pins = (r.get("determinism") or {}).get("pins", [])
print("cublas pin:", next((p["value"] for p in pins if p["name"] == "cublas"), "none"))'
exit $status
