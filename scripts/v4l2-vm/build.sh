#!/usr/bin/env bash
# Builds the V4L2 test VM into DIR: Debian's kernel (vmlinuz) and an initramfs
# (initrd.gz) holding busybox, scripts/v4l2-vm/init and the kernel modules it
# loads: virtio-pci and 9p (the host's root file system) and vivid, the
# kernel's virtual video test driver, which gives the VM a real V4L2 capture
# device, /dev/video0. edge-agent/tests/ingest.rs boots it under qemu (TCG:
# no KVM needed) to run the V4L2 source against that device.
#
# The kernel is the package linux-image-amd64 depends on today, in its
# candidate version, fetched with `apt-get download`, which checks it against
# Debian's signed archive index. It is not pinned to a hash: Debian's security
# archive keeps only its newest kernel build. DIR/stamp names the .deb and its
# hash; the build is redone only when the .deb, this script or init changes.
#
# Usage: build.sh DIR DOWNLOAD_DIR  (needs busybox-static, kmod, cpio)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="$1"
DL="$2"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 \
  || { echo "build.sh: /bin/busybox is missing or not static (Debian's busybox-static)" >&2; exit 1; }

# "PACKAGE VERSION" of the kernel linux-image-amd64 depends on, from apt's
# lists; empty when they lack it.
kernel() {
  local pkg version
  pkg="$(LC_ALL=C apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1 || true)"
  [ -n "$pkg" ] || return 0
  version="$(LC_ALL=C apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p' || true)"
  [ -n "$version" ] && [ "$version" != "(none)" ] && echo "$pkg $version"
  return 0
}
read -r pkg version <<< "$(kernel)" || true
if [ -z "${pkg:-}" ]; then
  $SUDO apt-get update -qq
  read -r pkg version <<< "$(kernel)" || true
fi
[ -n "${pkg:-}" ] || { echo "build.sh: no kernel package behind linux-image-amd64" >&2; exit 1; }
# apt-get download names the file PACKAGE_VERSION_ARCH.deb, ':' as %3a.
deb="$DL/${pkg}_${version//:/%3a}_amd64.deb"
if [ ! -f "$deb" ]; then
  echo "downloading Debian package $pkg $version" >&2
  if ! (cd "$DL" && apt-get download -q "$pkg=$version" >/dev/null 2>&1); then
    # Lists older than the archive: the version (or the package) is gone.
    $SUDO apt-get update -qq
    read -r pkg version <<< "$(kernel)" || true
    [ -n "${pkg:-}" ] || { echo "build.sh: no kernel package behind linux-image-amd64" >&2; exit 1; }
    deb="$DL/${pkg}_${version//:/%3a}_amd64.deb"
    (cd "$DL" && apt-get download -q "$pkg=$version" >/dev/null)
  fi
  [ -f "$deb" ] || { echo "build.sh: apt-get download did not produce $deb" >&2; exit 1; }
fi
stamp="$(basename "$deb") $(cat "$deb" "$HERE/build.sh" "$HERE/init" | sha256sum | cut -d' ' -f1)"
if [ -f "$DIR/initrd.gz" ] && [ -f "$DIR/vmlinuz" ] && [ "$(cat "$DIR/stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
echo "building the V4L2 test VM from $(basename "$deb")" >&2

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/kernel"
version="$(ls "$work/kernel/lib/modules")"
/sbin/depmod -b "$work/kernel" "$version"
moddir="$work/kernel/lib/modules/$version"

root="$work/initrd"
mkdir -p "$root"/{bin,dev,proc,sys,host,modules}
cp /bin/busybox "$root/bin/busybox"
cp "$HERE/init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"

# Each wanted module after its dependencies (modules.dep lists them deepest
# last), once; vivid with three devices that have only a video capture node
# each: /dev/video0, 1 and 2.
declare -A loaded=()
add() {
  local path="$1" params="$2" name
  name="$(basename "$path" .ko)"
  [ -z "${loaded[$name]:-}" ] || return 0
  loaded[$name]=1
  cp "$moddir/$path" "$root/modules/$name.ko"
  echo "$name $params" >> "$root/modules/order"
}
for wanted in virtio_pci 9pnet_virtio 9p vivid; do
  line="$(grep -E "/$wanted\.ko:" "$moddir/modules.dep")" \
    || { echo "build.sh: $wanted is not a module of $version" >&2; exit 1; }
  target="${line%%:*}"
  read -r -a deps <<< "${line#*:}"
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add "${deps[$i]}" ""; done
  params=""
  [ "$wanted" = vivid ] && params="n_devs=3 node_types=0x1,0x1,0x1"
  add "$target" "$params"
done

mkdir -p "$DIR"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -9 > "$DIR/initrd.gz.tmp"
cp "$work/kernel/boot/vmlinuz-$version" "$DIR/vmlinuz.tmp"
mv "$DIR/initrd.gz.tmp" "$DIR/initrd.gz"
mv "$DIR/vmlinuz.tmp" "$DIR/vmlinuz"
echo "$stamp" > "$DIR/stamp"
