#!/usr/bin/env bash
# Regenerate scripts/hot-functions.txt: the functions a run of /bin/true
# executes, in address order, which scripts/build-release.sh hands to the
# linker (--symbol-ordering-file) so that they sit together at the start of
# .text. The kernel maps file pages around each fault (fault-around, 64 KiB),
# so a run path spread over the binary makes most of .text resident; packed,
# only the run path's own pages are (docs/benchmarks.md, "Peak RSS").
#
# Usage: sudo bash scripts/hot-functions.sh [OUT]   (default scripts/hot-functions.txt)
# Environment: EXPRUN_BIN  a release binary built WITHOUT an ordering file
#   (default: EXPRUN_FUNCTION_ORDER= bash scripts/build-release.sh).
#
# How: the binary is copied onto a scratch ext2 file system on a loop device
# whose read-ahead is 0 and its page cache dropped, so that a page is cached
# only once a process touched it; the workload is `exprun run` of the fixture
# image, `run -b` and create/start/delete of a bundle of it (once to fill
# exprun's caches, then again measured). Every
# function that starts on a touched page is listed: page granularity, so the
# list holds the run path and its page neighbours. Names are the build's
# mangled symbols, which do not depend on the checkout path; a name a later
# build lacks is skipped by the linker, so the list ages slowly.
# Makes and removes a temp dir, a loop device and one mount.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${1:-$REPO/scripts/hot-functions.txt}
[ "$(id -u)" -eq 0 ] || { echo "hot-functions: needs root (loop device, exprun run)" >&2; exit 1; }

if [ -z "${EXPRUN_BIN:-}" ]; then
    EXPRUN_BIN=$(EXPRUN_FUNCTION_ORDER='' bash scripts/build-release.sh)
fi
bash rootfs-fixtures/build.sh >/dev/null

TMP=$(mktemp -d "${TMPDIR:-/tmp}/exprun-hot.XXXXXX")
LOOP=''
cleanup() {
    set +e
    if [ -x "$TMP/mnt/exprun" ] && [ -d "$TMP/root" ]; then
        for id in $("$TMP/mnt/exprun" --root "$TMP/root" list -q 2>/dev/null); do
            "$TMP/mnt/exprun" --root "$TMP/root" delete -f "$id" >/dev/null 2>&1
        done
    fi
    mountpoint -q "$TMP/mnt" && umount "$TMP/mnt"
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

truncate -s 256M "$TMP/fs.img"
mkfs.ext2 -q "$TMP/fs.img"
LOOP=$(losetup -f --show "$TMP/fs.img")
echo 0 >"/sys/block/${LOOP#/dev/}/queue/read_ahead_kb"
mkdir "$TMP/mnt"
mount "$LOOP" "$TMP/mnt"
cp "$EXPRUN_BIN" "$TMP/mnt/exprun"
BIN=$TMP/mnt/exprun

"$BIN" --root "$TMP/root" image import rootfs-fixtures/out/busybox-oci --name busybox:latest >/dev/null
# A bundle of the same image for the OCI paths: its layers unpacked in order.
layout=rootfs-fixtures/out/busybox-oci
mkdir -p "$TMP/bundle/rootfs"
manifest=$(jq -r '.manifests[0].digest | sub(":"; "/")' "$layout/index.json")
for layer in $(jq -r '.layers[].digest | sub(":"; "/")' "$layout/blobs/$manifest"); do
    tar -xf "$layout/blobs/$layer" -C "$TMP/bundle/rootfs"
done
(cd "$TMP/bundle" && "$BIN" spec)
jq '.process.args = ["/bin/true"] | .process.terminal = false' "$TMP/bundle/config.json" >"$TMP/config.json"
mv "$TMP/config.json" "$TMP/bundle/config.json"

# The paths a start takes: exprun run, run -b, and containerd's create,
# start, delete.
workload() {
    "$BIN" --root "$TMP/root" run busybox:latest -- /bin/true
    "$BIN" --root "$TMP/root" run -b "$TMP/bundle" "hot-run-$1"
    "$BIN" --root "$TMP/root" create -b "$TMP/bundle" "hot-oci-$1"
    "$BIN" --root "$TMP/root" start "hot-oci-$1"
    "$BIN" --root "$TMP/root" delete -f "hot-oci-$1" >/dev/null
}
workload 1

python3 - "$BIN" evict <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
EOF
workload 2

python3 - "$BIN" "$OUT" <<'EOF'
import ctypes, mmap, os, subprocess, sys
binary, out = sys.argv[1:3]
size = os.path.getsize(binary)
npages = (size + 4095) // 4096
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(binary, os.O_RDONLY)
ptr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
if ptr in (None, ctypes.c_void_p(-1).value):
    sys.exit('mmap: errno %d' % ctypes.get_errno())
vec = (ctypes.c_ubyte * npages)()
if libc.mincore(ctypes.c_void_p(ptr), ctypes.c_size_t(size), vec) != 0:
    sys.exit('mincore: errno %d' % ctypes.get_errno())
touched = {i for i in range(npages) if vec[i] & 1}
loads = []
for line in subprocess.run(['readelf', '-lW', binary], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if f and f[0] == 'LOAD':
        loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16), 'E' in f[6:-1]))
def file_offset(va):
    for off, vaddr, filesz, exe in loads:
        if exe and vaddr <= va < vaddr + filesz:
            return va - vaddr + off
    return None
hot = {}
for line in subprocess.run(['readelf', '-sW', binary], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if len(f) < 8 or f[3] != 'FUNC' or f[6] == 'UND':
        continue
    va, sz, name = int(f[1], 16), int(f[2], 0), f[7]
    off = file_offset(va)
    if off is None or name in hot:
        continue
    # A function runs from its first byte: its first page tells.
    if off // 4096 in touched:
        hot[name] = (va, sz)
with open(out, 'w') as fh:
    for name, _ in sorted(hot.items(), key=lambda kv: kv[1][0]):
        fh.write(name + '\n')
print('hot-functions: %d of %d pages of the binary touched; %d functions, %d bytes, written to %s'
      % (len(touched), npages, len(hot), sum(s for _, s in hot.values()), out), file=sys.stderr)
EOF
