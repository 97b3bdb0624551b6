#!/usr/bin/env bash
# Build a real Debian 12 (bookworm) cloud image, offline-bootable, from Debian packages.
#
# Usage: sudo scripts/build-debian-image.sh OUT.qcow2
#   env: KUMO_DEBIAN_CACHE   cache dir (default /var/tmp/kumo-test-cache/debian-image)
#        DEBIAN_MIRROR       mirror (default http://deb.debian.org/debian)
#        KUMO_DEBIAN_REBUILD=1  rebuild even if OUT is up to date
#
# Result: a 2 GiB (virtual) compressed qcow2, one MBR partition (ext4, whole disk, grown by
# cloud-init's growpart on larger volumes), GRUB for BIOS (SeaBIOS, q35 or pc), kernel
# linux-image-cloud-amd64 with console on ttyS0, stock cloud-init with datasources
# NoCloud (seed ISO labelled `cidata`), ConfigDrive, Ec2 (kumo's metadata service at
# 169.254.169.254); DHCP on the first NIC (cloud-init's fallback network config, rendered for
# ifupdown). Root has no password; cloud-init creates the default user `debian` (sudo, no
# password, SSH keys from the datasource). machine-id and SSH host keys are empty/absent and
# made on first boot. Needs root and network access to the mirror on the first run only.
#
# Timing (2 cores, shared with a compiling neighbour): cold ~3.5-4.5 min (~35 s downloading
# ~108 MB of .debs, ~2.5 min debootstrap, ~1 min configure/mkfs/qemu-img); warm with OUT up to
# date: instant (skipped; OUT.stamp records the digest of this script and the mirror); forced
# rebuild from the cached .debs: ~3 min, and needs no network. Output: ~165 MB qcow2.
#
# Caches (under $KUMO_DEBIAN_CACHE): debootstrap-<digest>.tgz, the .debs made by
# `debootstrap --make-tarball` (keyed by suite, mirror and package list), so a rebuild neither
# downloads nor needs the network (delete it to pick up newer Debian packages); work/ is
# scratch space (~1.5 GB while building), removed on success, kept on failure for debugging.
# Besides OUT: OUT.stamp and OUT.cmdline (the kernel command line, for reference).
#
# Bootloader, and why this way: on this machine `losetup -P` creates no partition devices
# (no /dev/loopNp1), and there is no device-mapper, so neither `grub-install` onto a loop
# device nor `extlinux --install` (needs a mounted fs) works. The image is therefore assembled
# without any mount or block device, as plain files:
#   - the root filesystem is made with `mkfs.ext4 -d ROOTDIR` into a file,
#   - the disk is a sparse raw file partitioned with `sfdisk` (partition 1 at 1 MiB),
#   - GRUB's i386-pc `boot.img` goes into the MBR (first 440 bytes, the partition table is
#     kept), with the same patch grub-bios-setup applies for hard disks (boot-drive check
#     NOP'ed); `core.img` from `grub-mkimage` goes right behind it at sector 1 (the usual
#     MBR gap, as grub-install embeds it; diskboot's default blocklist already says "sector 2,
#     N sectors", and grub-mkimage fills in N); core.img carries an embedded config that finds
#     the root fs by UUID and sets the prefix to /boot/grub, where the script writes a static
#     grub.cfg and copies the i386-pc modules,
#   - the ext4 file is dd'ed at the partition offset; `qemu-img convert -c` makes the qcow2.
# grub.cfg boots /vmlinuz and /initrd.img, the symlinks Debian's kernel packages keep current,
# so a kernel upgrade inside the guest still boots without update-grub.
set -euo pipefail

# Host tools this script uses (copy into setup.sh's PKGS to preinstall them).
PKGS=(
  debootstrap    # the root filesystem
  e2fsprogs      # mkfs.ext4 -d
  fdisk          # sfdisk
  grub-pc-bin    # grub-mkimage (grub-common), i386-pc boot.img/core modules
  qemu-utils     # qemu-img
  ca-certificates
)

# Packages of the guest, on top of debootstrap's minbase.
INCLUDE=(
  linux-image-cloud-amd64 initramfs-tools
  systemd-sysv udev dbus
  cloud-init cloud-guest-utils python3-cffi-backend  # (debootstrap does not resolve the virtual python3-cffi-backend-api-*)
  openssh-server sudo
  ifupdown isc-dhcp-client iproute2 netbase
  ca-certificates locales zstd  # zstd: initramfs-tools compresses with it (else gzip)
  iputils-ping curl procps less
)

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${KUMO_DEBIAN_CACHE:-/var/tmp/kumo-test-cache/debian-image}"
SIZE_MIB=2048        # virtual disk size
PART_START_MIB=1     # partition 1 starts at 1 MiB (sector 2048)

die() { echo "build-debian-image: $*" >&2; exit 1; }
log() { echo "build-debian-image: $(date +%T) $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 OUT.qcow2"
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot)"
OUT="$(realpath -m "$1")"
SELF="$(realpath "${BASH_SOURCE[0]}")"

# Skip when OUT is up to date: the digest covers this script (its config and package lists)
# and the mirror.
want="$( { sha256sum < "$SELF"; echo "$MIRROR"; } | sha256sum | cut -c1-16)"
if [ -s "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$want" ] && [ "${KUMO_DEBIAN_REBUILD:-0}" != 1 ]; then
  log "$OUT is up to date ($want)"
  exit 0
fi

# Host tools.
missing=()
for t in debootstrap:debootstrap mkfs.ext4:e2fsprogs sfdisk:fdisk grub-mkimage:grub-pc-bin qemu-img:qemu-utils; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
[ -f /usr/lib/grub/i386-pc/boot.img ] || missing+=(grub-pc-bin)
[ -d /usr/share/ca-certificates ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
fi

mkdir -p "$CACHE"
WORK="$CACHE/work"
ROOT="$WORK/root"

# Nothing may stay mounted inside the root we are about to delete or pack.
umount_root() {
  local m
  for m in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" || true
  done
}
trap umount_root EXIT
umount_root
rm -rf "$WORK"
mkdir -p "$WORK"

# 1. The .debs, once: debootstrap --make-tarball (keyed by suite, mirror and package list).
inc="$(IFS=,; echo "${INCLUDE[*]}")"
tarball="$CACHE/debootstrap-$(echo "$SUITE $MIRROR minbase $inc" | sha256sum | cut -c1-16).tgz"
if [ ! -s "$tarball" ]; then
  log "downloading packages into $tarball"
  debootstrap --variant=minbase --include="$inc" --make-tarball="$tarball.tmp" \
    "$SUITE" "$WORK/tarball" "$MIRROR" >"$WORK/make-tarball.log" 2>&1 \
    || { tail -30 "$WORK/make-tarball.log" >&2; die "debootstrap --make-tarball failed"; }
  mv "$tarball.tmp" "$tarball"
  rm -rf "$WORK/tarball"
  # Tarballs of older package lists are dead weight (~100 MB each).
  find "$CACHE" -maxdepth 1 -name 'debootstrap-*.tgz' ! -name "$(basename "$tarball")" -delete
fi

# 2. The root filesystem, from the tarball (no network).
log "debootstrap $SUITE into $ROOT"
debootstrap --variant=minbase --include="$inc" --unpack-tarball="$tarball" \
  "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
umount_root

# 3. Configure it like a cloud image.
log "configuring"
mount -t proc proc "$ROOT/proc"   # for locale-gen and update-initramfs; unmounted before packing
UUID="$(cat /proc/sys/kernel/random/uuid)"
CMDLINE="root=UUID=$UUID ro console=tty0 console=ttyS0,115200n8"

echo localhost > "$ROOT/etc/hostname"
cat > "$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
: > "$ROOT/etc/resolv.conf"   # debootstrap copied the build host's; dhclient writes the guest's

cat > "$ROOT/etc/fstab" <<EOF
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
UUID=$UUID	/	ext4	rw,discard,errors=remount-ro	0	1
EOF

cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://security.debian.org/debian-security $SUITE-security main
EOF

# ifupdown: only loopback here; cloud-init writes interfaces.d/50-cloud-init (DHCP on the
# first NIC, or the datasource's network config).
cat > "$ROOT/etc/network/interfaces" <<'EOF'
# The loopback interface; cloud-init writes the rest to /etc/network/interfaces.d/.
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*
EOF
mkdir -p "$ROOT/etc/network/interfaces.d"

# cloud-init: kumo's datasources. NoCloud first (kumo always attaches a `cidata` seed), then
# ConfigDrive, then Ec2 (metadata service at 169.254.169.254). ds-identify (the systemd
# generator that decides whether cloud-init runs at all, and with which datasources) rules Ec2
# out on a platform it cannot identify (QEMU's DMI is not EC2's) because strict_id defaults to
# true, and its default policy ignores "maybe" results (maybe=none): with no seed attached it
# would disable cloud-init altogether. strict_id false makes Ec2 a "maybe", and maybe=all uses
# it when no datasource is positively found (a seed or config drive still wins: found=all).
# ds-identify reads strict_id only from cloud.cfg or cloud.cfg.d/*[Ee][Cc]2*.cfg, hence the
# file name. The Ec2 waits are shortened (defaults: max_wait 120 s, timeout 50 s per try) and
# only the IPv4 URL is tried: kumo's metadata service answers at once or not at all.
cat > "$ROOT/etc/cloud/ds-identify.cfg" <<'EOF'
policy: search,found=all,maybe=all,notfound=disabled
EOF
cat > "$ROOT/etc/cloud/cloud.cfg.d/01_kumo.cfg" <<'EOF'
# kumo: datasources; SSH keys only; no DSA host key (OpenSSH 9 does not use it, and key
# generation is slow under TCG).
datasource_list: [ NoCloud, ConfigDrive, Ec2, None ]
ssh_pwauth: false
ssh_genkeytypes: [ rsa, ecdsa, ed25519 ]
EOF
cat > "$ROOT/etc/cloud/cloud.cfg.d/02_kumo_ec2.cfg" <<'EOF'
# kumo serves an EC2-style metadata service (IMDSv1 and v2) at 169.254.169.254.
datasource:
  Ec2:
    strict_id: false
    max_wait: 60
    timeout: 5
    metadata_urls: [ "http://169.254.169.254" ]
EOF

# Locales: C.UTF-8 is built into glibc; generate en_US.UTF-8 too so cloud-init's locale module
# (default en_US.UTF-8) only has to set it.
sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' "$ROOT/etc/locale.gen"
chroot "$ROOT" locale-gen >/dev/null
echo 'LANG=C.UTF-8' > "$ROOT/etc/default/locale"

# No resume device to wait for.
echo 'RESUME=none' > "$ROOT/etc/initramfs-tools/conf.d/resume"

# Clean state: root has no password (locked, as debootstrap leaves it), empty machine-id
# (systemd makes one on first boot), no SSH host keys (cloud-init's ssh module makes them),
# no apt lists, logs or caches.
chroot "$ROOT" passwd -l root >/dev/null
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT"/etc/ssh/ssh_host_*
chroot "$ROOT" update-initramfs -u -k all >/dev/null 2>&1
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/debconf/*-old \
  "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/tmp/* \
  "$ROOT"/var/tmp/* "$ROOT"/root/.bash_history
find "$ROOT/var/log" -type f -exec truncate -s 0 {} +
[ -e "$ROOT/vmlinuz" ] && [ -e "$ROOT/initrd.img" ] || die "no /vmlinuz or /initrd.img symlink in the root"

# 4. GRUB: modules and a static grub.cfg on the root fs, core.img for the MBR gap.
mkdir -p "$ROOT/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$ROOT/boot/grub/i386-pc/"
cat > "$ROOT/boot/grub/grub.cfg" <<EOF
# Static: boots the /vmlinuz and /initrd.img symlinks that the kernel packages keep current.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
menuentry 'Debian GNU/Linux 12 (bookworm)' {
	search --no-floppy --fs-uuid --set=root $UUID
	echo 'Loading Linux ...'
	linux /vmlinuz $CMDLINE
	echo 'Loading initial ramdisk ...'
	initrd /initrd.img
}
EOF
cat > "$WORK/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $UUID
set prefix=(\$root)/boot/grub
EOF
grub-mkimage -O i386-pc -o "$WORK/core.img" -c "$WORK/early.cfg" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 search search_fs_uuid normal configfile linux echo test serial terminal
core_bytes=$(stat -c %s "$WORK/core.img")
[ "$core_bytes" -lt $(( (PART_START_MIB * 2048 - 1) * 512 )) ] || die "core.img too large ($core_bytes bytes)"
cp /usr/lib/grub/i386-pc/boot.img "$WORK/boot.img"
# grub-bios-setup's hard-disk patch: NOP the boot-drive check jump at 0x66, trust %dl.
printf '\x90\x90' | dd of="$WORK/boot.img" bs=1 seek=$((0x66)) conv=notrunc status=none

# 5. Filesystem and disk.
umount_root
log "mkfs.ext4 -d (UUID $UUID)"
fs_mib=$(( SIZE_MIB - PART_START_MIB ))
truncate -s "${fs_mib}M" "$WORK/root.ext4"
mkfs.ext4 -q -F -L rootfs -U "$UUID" -d "$ROOT" "$WORK/root.ext4"
truncate -s "${SIZE_MIB}M" "$WORK/disk.raw"
printf 'label: dos\nstart=%d, type=83, bootable\n' $(( PART_START_MIB * 2048 )) \
  | sfdisk -q "$WORK/disk.raw"
dd if="$WORK/boot.img" of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/core.img" of="$WORK/disk.raw" bs=512 seek=1 conv=notrunc status=none
dd if="$WORK/root.ext4" of="$WORK/disk.raw" bs=1M seek="$PART_START_MIB" conv=notrunc,sparse status=none
rm -f "$WORK/root.ext4"

log "qemu-img convert -c"
mkdir -p "$(dirname "$OUT")"
qemu-img convert -c -O qcow2 "$WORK/disk.raw" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$want" > "$OUT.stamp"
echo "$CMDLINE" > "$OUT.cmdline"
rm -rf "$WORK"
log "done: $OUT ($(du -h "$OUT" | cut -f1) actual, ${SIZE_MIB} MiB virtual)"
