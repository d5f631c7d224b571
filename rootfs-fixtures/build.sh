#!/usr/bin/env bash
# Build the busybox test image used by exprun's tests, in three formats:
#   OUTDIR/busybox-oci/        OCI image layout (tag "latest")
#   OUTDIR/busybox-oci.tar     oci-archive of that layout
#   OUTDIR/busybox-docker.tar  docker-archive (legacy `docker save` layout)
#   OUTDIR/builder-oci/        an s2i builder image on top of it (tag "latest")
#   OUTDIR/digests.env         digests of all of the above
#
# Usage: bash rootfs-fixtures/build.sh [--no-check] [--force] [OUTDIR]
#   OUTDIR      default: out/ next to this script
#   --no-check  do not compare the result with pinned-digests.env (and always
#               rebuild); use this when updating the pin
#   --force     rebuild even if OUTDIR is already up to date
#
# The build is byte-for-byte reproducible on Debian 12: the only input from
# outside is one pinned Debian package, checked against a pinned sha256.
# See README.md next to this script.
set -euo pipefail

# ---------------------------------------------------------------- pins ----
BUSYBOX_PKG='busybox-static'
BUSYBOX_VERSION='1:1.35.0-4+deb12u1+b1'
BUSYBOX_DEB_SHA256='3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744'

REPO_TAG='fixtures/busybox'
CREATED='1970-01-01T00:00:00Z'

# ----------------------------------------------------- environment pins ----
umask 022
export LC_ALL=C TZ=UTC
# Variables that would change the behaviour of tar, gzip or zstd.
unset TAR_OPTIONS GZIP ZSTD_CLEVEL ZSTD_NBTHREADS POSIXLY_CORRECT || true

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PINNED_FILE="$SCRIPT_DIR/pinned-digests.env"
DIGEST_KEYS=(MANIFEST_DIGEST CONFIG_DIGEST LAYER1_DIGEST LAYER1_DIFF_ID
             LAYER2_DIGEST LAYER2_DIFF_ID OCI_ARCHIVE_SHA256 DOCKER_ARCHIVE_SHA256
             BUILDER_MANIFEST_DIGEST BUILDER_CONFIG_DIGEST LAYER3_DIGEST LAYER3_DIFF_ID)

MT_INDEX='application/vnd.oci.image.index.v1+json'
MT_MANIFEST='application/vnd.oci.image.manifest.v1+json'
MT_CONFIG='application/vnd.oci.image.config.v1+json'
MT_LAYER_GZIP='application/vnd.oci.image.layer.v1.tar+gzip'
MT_LAYER_ZSTD='application/vnd.oci.image.layer.v1.tar+zstd'

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '9,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# ------------------------------------------------------------ arguments ----
CHECK=1
FORCE=0
OUTDIR=''
while [ $# -gt 0 ]; do
    case $1 in
        --no-check) CHECK=0 ;;
        --force) FORCE=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; [ $# -gt 0 ] && { OUTDIR=$1; shift; }; break ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) [ -z "$OUTDIR" ] || die "more than one OUTDIR given"; OUTDIR=$1 ;;
    esac
    shift
done
[ $# -eq 0 ] || die "unexpected argument: $1"
OUTDIR=${OUTDIR:-$SCRIPT_DIR/out}

# ---------------------------------------------------------------- tools ----
sha256_of() { sha256sum -- "$1" | cut -d' ' -f1; }
size_of() { stat -c %s -- "$1"; }

ensure_tools() {
    local missing=() pkgs=() t
    for t in tar gzip zstd sha256sum dpkg-deb; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        for t in "${missing[@]}"; do
            case $t in
                sha256sum) pkgs+=(coreutils) ;;
                dpkg-deb) pkgs+=(dpkg) ;;
                *) pkgs+=("$t") ;;
            esac
        done
        log "installing missing tools: ${missing[*]}"
        [ "$(id -u)" = 0 ] || die "missing tools (${missing[*]}) and not root: apt-get install ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq "${pkgs[@]}" >&2 \
            || { apt-get update -qq >&2 && apt-get install -y -qq "${pkgs[@]}" >&2; } \
            || die "could not install: ${pkgs[*]}"
    fi
    tar --version 2>/dev/null | head -n1 | grep -q 'GNU tar' || die "GNU tar is required"
}

# ------------------------------------------------------------ helpers ----
# Deterministic tar of the contents of directory $1 (not $1 itself) to $2.
# Entry names are relative without "./", in C-locale order of the full path
# (so a directory always comes before its contents), mtime 0, numeric
# owner 0:0 except for paths listed in $3 (lines "path uid gid"), which get
# that owner. Modes come from the tree, which the callers set explicitly.
TAR_OPTS=(--format=gnu --sort=name --mtime=@0 --numeric-owner --no-recursion
          --no-acls --no-xattrs --no-selinux --hard-dereference)
det_tar() {
    local src=$1 out=$2 owners=${3:-/dev/null} runs=$WORK/tar-runs n=0 owner op
    rm -rf -- "$runs"; mkdir -p "$runs"
    # Split the sorted entry list into runs of consecutive entries with the
    # same owner; each run becomes one tar invocation (create, then append).
    (cd "$src" && find . -mindepth 1 -printf '%P\n') | sort \
        | awk -v dir="$runs" '
            FILENAME == ARGV[1] { own[$1] = $2 ":" $3; next }
            {
                o = ($0 in own) ? own[$0] : "0:0"
                if (o != cur) { n++; cur = o; print o > (dir "/" n ".owner"); close(dir "/" n ".owner") }
                print > (dir "/" n ".list")
            }' "$owners" -
    while [ -f "$runs/$((n + 1)).list" ]; do
        n=$((n + 1))
        owner=$(cat "$runs/$n.owner")
        if [ "$n" = 1 ]; then op=--create; else op=--append; fi
        tar "$op" -f "$out" -C "$src" "${TAR_OPTS[@]}" \
            --owner="${owner%:*}" --group="${owner#*:}" --verbatim-files-from -T "$runs/$n.list"
    done
    [ "$n" -gt 0 ] || die "det_tar: $src is empty"
}

# Write a string to a file, byte-exact (no trailing newline added).
put() { printf '%s' "$2" >"$1"; }

# Descriptor JSON: mediaType, digest, size (+ optional extra members).
descriptor() { printf '{"mediaType":"%s","digest":"%s","size":%s%s}' "$1" "$2" "$3" "${4:-}"; }

index_json() { # manifest-digest manifest-size
    printf '{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}' "$MT_INDEX" \
        "$(descriptor "$MT_MANIFEST" "$1" "$2" ',"annotations":{"org.opencontainers.image.ref.name":"latest"}')"
}
OCI_LAYOUT_JSON='{"imageLayoutVersion":"1.0.0"}'

# Read KEY=VALUE from an env file (no sourcing: the file is data).
env_get() { sed -n "s/^$2=//p" "$1" | head -n1; }

# -------------------------------------------------------- up-to-date? ----
# OUTDIR counts as up to date when its digests.env is the pinned one and
# every output file still hashes to what that file says.
up_to_date() {
    local d=$OUTDIR/digests.env k v hex f expect
    [ -f "$PINNED_FILE" ] && [ -f "$d" ] && cmp -s "$d" "$PINNED_FILE" || return 1
    [ "$(sha256_of "$OUTDIR/busybox-oci.tar" 2>/dev/null)" = "$(env_get "$d" OCI_ARCHIVE_SHA256)" ] || return 1
    [ "$(sha256_of "$OUTDIR/busybox-docker.tar" 2>/dev/null)" = "$(env_get "$d" DOCKER_ARCHIVE_SHA256)" ] || return 1
    expect='busybox-oci/index.json
busybox-oci/oci-layout'
    for k in MANIFEST_DIGEST CONFIG_DIGEST LAYER1_DIGEST LAYER2_DIGEST; do
        v=$(env_get "$d" "$k"); hex=${v#sha256:}
        f=$OUTDIR/busybox-oci/blobs/sha256/$hex
        [ -f "$f" ] && [ "$(sha256_of "$f")" = "$hex" ] || return 1
        expect+=$'\n'"busybox-oci/blobs/sha256/$hex"
    done
    [ "$(cd "$OUTDIR" && find busybox-oci ! -type d | sort)" = "$(printf '%s\n' "$expect" | sort)" ] || return 1
    v=$(env_get "$d" MANIFEST_DIGEST)
    [ "$(cat "$OUTDIR/busybox-oci/index.json")" = "$(index_json "$v" "$(size_of "$OUTDIR/busybox-oci/blobs/sha256/${v#sha256:}")")" ] || return 1
    [ "$(cat "$OUTDIR/busybox-oci/oci-layout")" = "$OCI_LAYOUT_JSON" ] || return 1
    expect='builder-oci/index.json
builder-oci/oci-layout'
    for k in BUILDER_MANIFEST_DIGEST BUILDER_CONFIG_DIGEST LAYER1_DIGEST LAYER2_DIGEST LAYER3_DIGEST; do
        v=$(env_get "$d" "$k"); hex=${v#sha256:}
        f=$OUTDIR/builder-oci/blobs/sha256/$hex
        [ -f "$f" ] && [ "$(sha256_of "$f")" = "$hex" ] || return 1
        expect+=$'\n'"builder-oci/blobs/sha256/$hex"
    done
    [ "$(cd "$OUTDIR" && find builder-oci ! -type d | sort)" = "$(printf '%s\n' "$expect" | sort)" ] || return 1
    v=$(env_get "$d" BUILDER_MANIFEST_DIGEST)
    [ "$(cat "$OUTDIR/builder-oci/index.json")" = "$(index_json "$v" "$(size_of "$OUTDIR/builder-oci/blobs/sha256/${v#sha256:}")")" ] || return 1
    [ "$(cat "$OUTDIR/builder-oci/oci-layout")" = "$OCI_LAYOUT_JSON" ] || return 1
}

if [ "$CHECK" = 1 ] && [ "$FORCE" = 0 ] && [ -d "$OUTDIR" ] && up_to_date; then
    echo "fixtures up to date"
    exit 0
fi

# --------------------------------------------------------------- setup ----
ensure_tools
WORK=$(mktemp -d "${TMPDIR:-/tmp}/exprun-fixtures.XXXXXX")
cleanup() { rm -rf -- "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ------------------------------------------------- 1. the Debian package ----
# BUSYBOX_DEB=/path/to/the.deb skips the download (same sha256 check).
DL=$WORK/download
mkdir -p "$DL"
if [ -n "${BUSYBOX_DEB:-}" ]; then
    cp -- "$BUSYBOX_DEB" "$DL/busybox-static.deb"
else
    # Let apt's _apt sandbox user write the download directory.
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
        chmod 0755 "$WORK"; chown _apt "$DL"
    fi
    log "downloading $BUSYBOX_PKG=$BUSYBOX_VERSION"
    if ! (cd "$DL" && apt-get download -qq "$BUSYBOX_PKG=$BUSYBOX_VERSION") >&2; then
        log "apt-get download failed; running apt-get update -qq and retrying"
        apt-get update -qq >&2 || true
        (cd "$DL" && apt-get download -qq "$BUSYBOX_PKG=$BUSYBOX_VERSION") >&2 \
            || die "could not download $BUSYBOX_PKG=$BUSYBOX_VERSION from the apt sources (if the mirror no longer has it, set BUSYBOX_DEB=/path/to/the.deb or update the pin, see README.md)"
    fi
fi
shopt -s nullglob
debs=("$DL"/*.deb)
shopt -u nullglob
[ ${#debs[@]} -eq 1 ] || die "expected exactly one .deb in $DL, found ${#debs[@]}"
DEB=${debs[0]}
found=$(sha256_of "$DEB")
if [ "$found" != "$BUSYBOX_DEB_SHA256" ]; then
    die "sha256 mismatch for $BUSYBOX_PKG $BUSYBOX_VERSION: expected $BUSYBOX_DEB_SHA256, found $found"
fi
dpkg-deb -x "$DEB" "$WORK/deb"
BUSYBOX_BIN=$WORK/deb/bin/busybox
[ -x "$BUSYBOX_BIN" ] || die "bin/busybox not found in $DEB"

# ------------------------------------------------------ 2. layer trees ----
L1=$WORK/layer1
L2=$WORK/layer2

# Layer 1 "base".
mkdir -p "$L1"/bin "$L1"/dev "$L1"/proc "$L1"/sys "$L1"/tmp "$L1"/etc \
    "$L1"/root "$L1"/home/researcher "$L1"/var "$L1"/usr/local/bin "$L1"/opt/data
cp -- "$BUSYBOX_BIN" "$L1/bin/busybox"
"$BUSYBOX_BIN" --list | sort -u | while IFS= read -r applet; do
    case $applet in
        ''|busybox) continue ;;
        */*) die "unexpected applet name: $applet" ;;
    esac
    ln -s busybox "$L1/bin/$applet"
done
put "$L1/etc/passwd" 'root:x:0:0:root:/root:/bin/sh
researcher:x:1000:1000:Researcher:/home/researcher:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
'
put "$L1/etc/group" 'root:x:0:
researcher:x:1000:
extra:x:2000:researcher
nogroup:x:65534:
'
put "$L1/etc/removed-by-layer2" 'this file is deleted by a whiteout in layer 2
'
put "$L1/etc/fixture-release" 'busybox fixture layer 1
'
put "$L1/opt/data/old-a" 'old file a from layer 1, hidden by the opaque directory in layer 2
'
put "$L1/opt/data/old-b" 'old file b from layer 1, hidden by the opaque directory in layer 2
'

# Layer 2 "experiment".
mkdir -p "$L2"/etc "$L2"/opt/data "$L2"/usr/local/bin
: >"$L2/etc/.wh.removed-by-layer2"
: >"$L2/opt/data/.wh..wh..opq"
put "$L2/opt/data/new" 'new in layer 2
'
put "$L2/usr/local/bin/experiment" '#!/bin/sh
# exprun fixture experiment: print the result, and keep a copy in /out if
# an output directory is mounted there.
echo "result: 42"
if [ -d /out ]; then
    echo "result: 42" >/out/result.txt
fi
exit 0
'

# Explicit modes, whatever the umask or the source files had.
for t in "$L1" "$L2"; do
    find "$t" -type d -exec chmod 0755 {} +
    find "$t" -type f -exec chmod 0644 {} +
done
chmod 0755 "$L1/bin/busybox" "$L2/usr/local/bin/experiment"
chmod 1777 "$L1/tmp"
chmod 0700 "$L1/root"

# Ownership is set in the tar headers (det_tar), not on disk, so no root needed.
L1_OWNERS=$WORK/layer1.owners
printf 'home/researcher 1000 1000\n' >"$L1_OWNERS"

det_tar "$L1" "$WORK/layer1.tar" "$L1_OWNERS"
det_tar "$L2" "$WORK/layer2.tar"

# -------------------------------------------------------- 3. compress ----
gzip -n -9 -c <"$WORK/layer1.tar" >"$WORK/layer1.tar.gz"
zstd -q -19 --no-progress --single-thread -c <"$WORK/layer2.tar" >"$WORK/layer2.tar.zst"

L1_DIFF=sha256:$(sha256_of "$WORK/layer1.tar")
L2_DIFF=sha256:$(sha256_of "$WORK/layer2.tar")
L1_DIGEST=sha256:$(sha256_of "$WORK/layer1.tar.gz")
L2_DIGEST=sha256:$(sha256_of "$WORK/layer2.tar.zst")
L1_SIZE=$(size_of "$WORK/layer1.tar.gz")
L2_SIZE=$(size_of "$WORK/layer2.tar.zst")

# ---------------------------------------------------- 4. image config ----
history_entry() { printf '{"created":"%s","created_by":"rootfs-fixtures/build.sh: %s"}' "$CREATED" "$1"; }
CONFIG_JSON=$(printf '{"architecture":"amd64","os":"linux","created":"%s","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","FIXTURE=busybox"],"Cmd":["/bin/sh","-c","echo hello from the exprun fixture"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["%s","%s"]},"history":[%s,%s]}' \
    "$CREATED" "$L1_DIFF" "$L2_DIFF" \
    "$(history_entry 'layer 1 base')" "$(history_entry 'layer 2 experiment')")
put "$WORK/config.json" "$CONFIG_JSON"
CONFIG_DIGEST=sha256:$(sha256_of "$WORK/config.json")
CONFIG_SIZE=$(size_of "$WORK/config.json")

MANIFEST_JSON=$(printf '{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[%s,%s]}' \
    "$MT_MANIFEST" \
    "$(descriptor "$MT_CONFIG" "$CONFIG_DIGEST" "$CONFIG_SIZE")" \
    "$(descriptor "$MT_LAYER_GZIP" "$L1_DIGEST" "$L1_SIZE")" \
    "$(descriptor "$MT_LAYER_ZSTD" "$L2_DIGEST" "$L2_SIZE")")
put "$WORK/manifest.json" "$MANIFEST_JSON"
MANIFEST_DIGEST=sha256:$(sha256_of "$WORK/manifest.json")
MANIFEST_SIZE=$(size_of "$WORK/manifest.json")

# ------------------------------------------------------ 5. the outputs ----
STAGE=$WORK/stage
mkdir -p "$STAGE"

# OCI image layout.
OCI=$STAGE/busybox-oci
mkdir -p "$OCI/blobs/sha256"
put "$OCI/oci-layout" "$OCI_LAYOUT_JSON"
index_json "$MANIFEST_DIGEST" "$MANIFEST_SIZE" >"$OCI/index.json"
cp -- "$WORK/manifest.json" "$OCI/blobs/sha256/${MANIFEST_DIGEST#sha256:}"
cp -- "$WORK/config.json" "$OCI/blobs/sha256/${CONFIG_DIGEST#sha256:}"
cp -- "$WORK/layer1.tar.gz" "$OCI/blobs/sha256/${L1_DIGEST#sha256:}"
cp -- "$WORK/layer2.tar.zst" "$OCI/blobs/sha256/${L2_DIGEST#sha256:}"
find "$OCI" -type d -exec chmod 0755 {} +
find "$OCI" -type f -exec chmod 0644 {} +

# oci-archive.
det_tar "$OCI" "$STAGE/busybox-oci.tar"

# docker-archive (legacy `docker save` layout).
DOCK=$WORK/docker
mkdir -p "$DOCK"
L1_HEX=${L1_DIFF#sha256:}
L2_HEX=${L2_DIFF#sha256:}
for pair in "$L1_HEX:layer1.tar" "$L2_HEX:layer2.tar"; do
    hex=${pair%%:*}
    mkdir -p "$DOCK/$hex"
    cp -- "$WORK/${pair#*:}" "$DOCK/$hex/layer.tar"
    put "$DOCK/$hex/VERSION" '1.0'
    put "$DOCK/$hex/json" "{\"id\":\"$hex\"}"
done
cp -- "$WORK/config.json" "$DOCK/${CONFIG_DIGEST#sha256:}.json"
put "$DOCK/manifest.json" "$(printf '[{"Config":"%s.json","RepoTags":["%s:latest"],"Layers":["%s/layer.tar","%s/layer.tar"]}]' \
    "${CONFIG_DIGEST#sha256:}" "$REPO_TAG" "$L1_HEX" "$L2_HEX")"
put "$DOCK/repositories" "$(printf '{"%s":{"latest":"%s"}}' "$REPO_TAG" "$L2_HEX")"
find "$DOCK" -type d -exec chmod 0755 {} +
find "$DOCK" -type f -exec chmod 0644 {} +
det_tar "$DOCK" "$STAGE/busybox-docker.tar"

chmod 0644 "$STAGE/busybox-oci.tar" "$STAGE/busybox-docker.tar"

# ------------------------------------------------- 6. the s2i builder ----
# The busybox layers plus layer 3 "s2i": the s2i scripts in /usr/libexec/s2i,
# user 1001 ("default", home /opt/app-root/src) and its writable
# /opt/app-root. The label io.openshift.s2i.scripts-url names the scripts.
L3=$WORK/layer3
mkdir -p "$L3"/etc "$L3"/opt/app-root/src "$L3"/usr/libexec/s2i
put "$L3/etc/passwd" 'root:x:0:0:root:/root:/bin/sh
researcher:x:1000:1000:Researcher:/home/researcher:/bin/sh
default:x:1001:0:Default Application User:/opt/app-root/src:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
'
put "$L3/usr/libexec/s2i/assemble" '#!/bin/sh
# s2i assemble of the exprun fixture builder: install the application source
# from /tmp/src into /opt/app-root/src, then run its build step (build.sh)
# there if it has one.
set -e
echo "---> Installing application source"
cp -R /tmp/src/. /opt/app-root/src/
cd /opt/app-root/src
if [ -f build.sh ]; then
    echo "---> Building"
    sh ./build.sh
fi
echo "---> Assembled"
'
put "$L3/usr/libexec/s2i/run" '#!/bin/sh
# s2i run of the exprun fixture builder: start the assembled application.
cd /opt/app-root/src
if [ -f app.sh ]; then
    exec sh ./app.sh "$@"
fi
echo "run: no app.sh in /opt/app-root/src" >&2
exit 1
'
put "$L3/usr/libexec/s2i/usage" '#!/bin/sh
echo "exprun fixture s2i builder: exprun build --builder IMAGE --source DIR -t NAME"
'
find "$L3" -type d -exec chmod 0755 {} +
find "$L3" -type f -exec chmod 0644 {} +
chmod 0755 "$L3"/usr/libexec/s2i/*
chmod 0775 "$L3/opt/app-root" "$L3/opt/app-root/src"
L3_OWNERS=$WORK/layer3.owners
printf 'opt/app-root 1001 0\nopt/app-root/src 1001 0\n' >"$L3_OWNERS"
det_tar "$L3" "$WORK/layer3.tar" "$L3_OWNERS"
gzip -n -9 -c <"$WORK/layer3.tar" >"$WORK/layer3.tar.gz"
L3_DIFF=sha256:$(sha256_of "$WORK/layer3.tar")
L3_DIGEST=sha256:$(sha256_of "$WORK/layer3.tar.gz")
L3_SIZE=$(size_of "$WORK/layer3.tar.gz")

BUILDER_CONFIG_JSON=$(printf '{"architecture":"amd64","os":"linux","created":"%s","config":{"User":"1001","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","FIXTURE=builder"],"Cmd":["/usr/libexec/s2i/usage"],"WorkingDir":"/opt/app-root/src","Labels":{"io.openshift.s2i.scripts-url":"image:///usr/libexec/s2i"}},"rootfs":{"type":"layers","diff_ids":["%s","%s","%s"]},"history":[%s,%s,%s]}' \
    "$CREATED" "$L1_DIFF" "$L2_DIFF" "$L3_DIFF" \
    "$(history_entry 'layer 1 base')" "$(history_entry 'layer 2 experiment')" "$(history_entry 'layer 3 s2i')")
put "$WORK/builder-config.json" "$BUILDER_CONFIG_JSON"
BUILDER_CONFIG_DIGEST=sha256:$(sha256_of "$WORK/builder-config.json")
BUILDER_CONFIG_SIZE=$(size_of "$WORK/builder-config.json")
BUILDER_MANIFEST_JSON=$(printf '{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[%s,%s,%s]}' \
    "$MT_MANIFEST" \
    "$(descriptor "$MT_CONFIG" "$BUILDER_CONFIG_DIGEST" "$BUILDER_CONFIG_SIZE")" \
    "$(descriptor "$MT_LAYER_GZIP" "$L1_DIGEST" "$L1_SIZE")" \
    "$(descriptor "$MT_LAYER_ZSTD" "$L2_DIGEST" "$L2_SIZE")" \
    "$(descriptor "$MT_LAYER_GZIP" "$L3_DIGEST" "$L3_SIZE")")
put "$WORK/builder-manifest.json" "$BUILDER_MANIFEST_JSON"
BUILDER_MANIFEST_DIGEST=sha256:$(sha256_of "$WORK/builder-manifest.json")
BUILDER_MANIFEST_SIZE=$(size_of "$WORK/builder-manifest.json")

BUILDER=$STAGE/builder-oci
mkdir -p "$BUILDER/blobs/sha256"
put "$BUILDER/oci-layout" "$OCI_LAYOUT_JSON"
index_json "$BUILDER_MANIFEST_DIGEST" "$BUILDER_MANIFEST_SIZE" >"$BUILDER/index.json"
cp -- "$WORK/builder-manifest.json" "$BUILDER/blobs/sha256/${BUILDER_MANIFEST_DIGEST#sha256:}"
cp -- "$WORK/builder-config.json" "$BUILDER/blobs/sha256/${BUILDER_CONFIG_DIGEST#sha256:}"
cp -- "$WORK/layer1.tar.gz" "$BUILDER/blobs/sha256/${L1_DIGEST#sha256:}"
cp -- "$WORK/layer2.tar.zst" "$BUILDER/blobs/sha256/${L2_DIGEST#sha256:}"
cp -- "$WORK/layer3.tar.gz" "$BUILDER/blobs/sha256/${L3_DIGEST#sha256:}"
find "$BUILDER" -type d -exec chmod 0755 {} +
find "$BUILDER" -type f -exec chmod 0644 {} +

# digests.env
{
    printf 'MANIFEST_DIGEST=%s\n' "$MANIFEST_DIGEST"
    printf 'CONFIG_DIGEST=%s\n' "$CONFIG_DIGEST"
    printf 'LAYER1_DIGEST=%s\n' "$L1_DIGEST"
    printf 'LAYER1_DIFF_ID=%s\n' "$L1_DIFF"
    printf 'LAYER2_DIGEST=%s\n' "$L2_DIGEST"
    printf 'LAYER2_DIFF_ID=%s\n' "$L2_DIFF"
    printf 'OCI_ARCHIVE_SHA256=%s\n' "$(sha256_of "$STAGE/busybox-oci.tar")"
    printf 'DOCKER_ARCHIVE_SHA256=%s\n' "$(sha256_of "$STAGE/busybox-docker.tar")"
    printf 'BUILDER_MANIFEST_DIGEST=%s\n' "$BUILDER_MANIFEST_DIGEST"
    printf 'BUILDER_CONFIG_DIGEST=%s\n' "$BUILDER_CONFIG_DIGEST"
    printf 'LAYER3_DIGEST=%s\n' "$L3_DIGEST"
    printf 'LAYER3_DIFF_ID=%s\n' "$L3_DIFF"
} >"$STAGE/digests.env"

# Install into OUTDIR: remove only our own outputs there, never OUTDIR itself.
# digests.env goes first out and last in, so an interrupted install is never
# taken for an up-to-date one.
mkdir -p "$OUTDIR"
rm -f -- "$OUTDIR/digests.env"
rm -rf -- "$OUTDIR/busybox-oci" "$OUTDIR/builder-oci"
rm -f -- "$OUTDIR/busybox-oci.tar" "$OUTDIR/busybox-docker.tar"
cp -R -- "$OCI" "$OUTDIR/busybox-oci"
cp -R -- "$BUILDER" "$OUTDIR/builder-oci"
cp -- "$STAGE/busybox-oci.tar" "$STAGE/busybox-docker.tar" "$OUTDIR/"
cp -- "$STAGE/digests.env" "$OUTDIR/digests.env"

# ------------------------------------------------------ 7. pin check ----
if [ "$CHECK" = 1 ]; then
    [ -f "$PINNED_FILE" ] \
        || die "no $PINNED_FILE to compare with (build with --no-check and copy $OUTDIR/digests.env there to create it)"
    bad=0
    for k in "${DIGEST_KEYS[@]}"; do
        want=$(env_get "$PINNED_FILE" "$k")
        got=$(env_get "$OUTDIR/digests.env" "$k")
        if [ "$want" != "$got" ]; then
            log "$k differs from pinned-digests.env: expected ${want:-<missing>}, found $got"
            bad=1
        fi
    done
    [ "$bad" = 0 ] || die "the fixtures do not match $PINNED_FILE (build not reproducible, or the pin needs updating: see README.md)"
fi

echo "busybox fixture built in $OUTDIR: manifest $MANIFEST_DIGEST"
