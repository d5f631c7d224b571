#!/usr/bin/env bash
# Install the Debian packages exprun's build and tests need, if missing:
#   libseccomp-dev     seccomp (linked into exprun)
#   protobuf-compiler  protoc, for the CRI client the containerd test builds
#   zstd               the fixture image's second layer
#   containerd, runc   the end-to-end test under containerd (and the reference)
#   uidmap             newuidmap/newgidmap, for rootless runs with /etc/subuid ranges
#   docker-registry    a real OCI registry for the pull/push tests (started by the tests)
#   skopeo             an independent registry client the tests cross-check against
#   apache2-utils      htpasswd, for the registry test with basic auth
#   strace             delays a system call in a race test (tests/oci_cli.rs)
#   gcc, libc6-dev     a static probe program the seccomp tests compile (tests/adversarial)
# and, without their recommends, for the guest-kernel tests (tests/guest.rs):
#   qemu-system-x86    boots the Debian 12 guest
#   mmdebstrap         builds the guest's root filesystem and the python3/numpy image of
#                      tests/verify_ml.rs from Debian packages
#   e2fsprogs          mke2fs -d, the guest's root disk image
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=()
[ -e /usr/include/seccomp.h ] || packages+=(libseccomp-dev)
command -v protoc >/dev/null || packages+=(protobuf-compiler)
command -v zstd >/dev/null || packages+=(zstd)
command -v containerd-shim-runc-v2 >/dev/null || packages+=(containerd)
command -v runc >/dev/null || packages+=(runc)
command -v newuidmap >/dev/null || packages+=(uidmap)
command -v docker-registry >/dev/null || packages+=(docker-registry)
command -v skopeo >/dev/null || packages+=(skopeo)
command -v htpasswd >/dev/null || packages+=(apache2-utils)
command -v strace >/dev/null || packages+=(strace)
{ command -v cc >/dev/null && compgen -G '/usr/lib/*-linux-gnu/libc.a' >/dev/null; } || packages+=(gcc libc6-dev)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "install-deps: installing ${packages[*]}"
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi
guest=()
command -v qemu-system-x86_64 >/dev/null || guest+=(qemu-system-x86)
command -v mmdebstrap >/dev/null || guest+=(mmdebstrap)
command -v mke2fs >/dev/null || guest+=(e2fsprogs)
if [ "${#guest[@]}" -gt 0 ]; then
  echo "install-deps: installing ${guest[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${guest[@]}" >/dev/null
fi
