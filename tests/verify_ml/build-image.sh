#!/usr/bin/env bash
# Build the image of the ML acceptance test (tests/verify_ml.rs): Debian 12's
# python3 and python3-numpy, made by mmdebstrap from Debian packages only, as a
# docker-archive that `exprun image import` reads.
#
# Usage: build-image.sh OUT.tar
# Needs root and mmdebstrap. EXPRUN_ML_MIRROR overrides the mirror.
set -euo pipefail
out=${1:?usage: build-image.sh OUT.tar}
mirror=${EXPRUN_ML_MIRROR:-http://deb.debian.org/debian}

work=$(mktemp -d "$(dirname "$out")/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Its users are Debian's base-passwd ones (root, system users, nobody): no uid
# 1000, which the user variation once ran as whatever the image held. No
# documentation, no translations.
mmdebstrap --variant=essential --include=python3,python3-numpy \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$work/layer.tar" "$mirror"

# The docker-archive: one uncompressed layer, a config naming its diff_id.
layer_hex=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir "$work/archive"
mv "$work/layer.tar" "$work/archive/$layer_hex.tar"
cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["python3"]},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_hex"]}}
JSON
config_hex=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/archive/$config_hex.json"
cat > "$work/archive/manifest.json" <<JSON
[{"Config":"$config_hex.json","RepoTags":["exprun-test/ml:latest"],"Layers":["$layer_hex.tar"]}]
JSON
tar -C "$work/archive" -cf "$out.partial" .
mv "$out.partial" "$out"
