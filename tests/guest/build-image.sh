#!/usr/bin/env bash
# Build the guest image of the guest-kernel tests: a Debian 12 root filesystem
# made by mmdebstrap from Debian packages only (tests/guest/packages), with
# systemd as pid 1 on the unified cgroup v2 hierarchy, a test user with a
# lingering systemd user manager, and a unit that runs the test cases from the
# host's 9p share at boot and powers off.
#
# Usage: build-image.sh OUTDIR
# Writes OUTDIR/vmlinuz, OUTDIR/initrd.img and OUTDIR/rootfs.img (ext4, raw).
# Needs root, mmdebstrap and mke2fs. EXPRUN_GUEST_MIRROR overrides the mirror.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUTDIR}
mirror=${EXPRUN_GUEST_MIRROR:-http://deb.debian.org/debian}

mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

packages=$(grep -v '^[[:space:]]*#' "$here/packages" | xargs | tr ' ' ',')

# Before the kernel is installed: an initramfs with only the drivers the guest
# needs to find its root disk, so that it is small and quick to make and boot.
essential_hook='
set -e
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
printf "MODULES=list\nCOMPRESS=gzip\n" > "$1/etc/initramfs-tools/conf.d/exprun-guest"
printf "virtio_pci\nvirtio_blk\next4\n" > "$1/usr/share/initramfs-tools/modules.d/exprun-guest"
'

customize_hook='
set -e
r=$1
echo exprun-guest > "$r/etc/hostname"
printf "127.0.0.1 localhost\n127.0.1.1 exprun-guest\n" > "$r/etc/hosts"
cat > "$r/etc/fstab" <<FSTAB
/dev/vda / ext4 rw,errors=remount-ro 0 1
exprun-host /mnt/host 9p trans=virtio,version=9p2000.L,msize=524288,nofail 0 0
FSTAB
mkdir -p "$r/mnt/host"
printf "9p\n9pnet_virtio\n" > "$r/etc/modules-load.d/exprun-guest.conf"
chroot "$r" passwd -d root >/dev/null
chroot "$r" useradd -m -s /bin/sh -u 1000 tester
echo tester:100000:65536 > "$r/etc/subuid"
echo tester:100000:65536 > "$r/etc/subgid"
mkdir -p "$r/var/lib/systemd/linger"
touch "$r/var/lib/systemd/linger/tester"
cat > "$r/etc/systemd/system/exprun-guest-tests.service" <<UNIT
[Unit]
Description=exprun guest test cases from the host share
After=multi-user.target mnt-host.mount user@1000.service
Requires=mnt-host.mount
ConditionPathExists=/mnt/host/run-cases.sh
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
Delegate=yes
ExecStart=/bin/sh /mnt/host/run-cases.sh /mnt/host
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
chroot "$r" systemctl enable exprun-guest-tests.service
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
         systemd-networkd-wait-online.service; do
  ln -sf /dev/null "$r/etc/systemd/system/$u"
done
'

mmdebstrap --variant=minbase --include="$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --essential-hook="$essential_hook" \
  --customize-hook="$customize_hook" \
  bookworm "$root" "$mirror"

kernel=$(ls "$root"/boot/vmlinuz-* | head -n1)
initrd=$(ls "$root"/boot/initrd.img-* | head -n1)
cp "$kernel" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"
# Sparse: 4 GiB of room for the runs, a few hundred MiB on disk.
rm -f "$out/rootfs.img"
mke2fs -q -t ext4 -L exprun-guest -d "$root" "$out/rootfs.img" 4G
