#!/usr/bin/env bash
# Build the systemd Debian 12 test-host image used by every Molecule scenario, and
# the base-image archive test hosts build hub and user images from.
#
# No registry can be reached from CI, so the image is made with debootstrap and
# `docker import`ed. It is tagged with a hash of this script, so it is rebuilt only
# when this script changes; `gpuhub-testhost:latest` always points at the current one.
#
# (docker import cannot set STOPSIGNAL; stopping takes the default signal, which is fine
# for throwaway hosts.)
#
# Usage: molecule/testhost/build.sh [--force]
# Env:   TESTHOST_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=gpuhub-testhost
mirror=${TESTHOST_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,curl,gnupg,cron,busybox-static
hash=$(sha256sum "$here/build.sh" | cut -c1-12)
tag="$repo:$hash"

log() { printf 'testhost: %s\n' "$*" >&2; }

top=$(cd "$here/../.." && pwd)
cache="$top/.cache/testhost"
# The air-gap path of jupyterhub_images: a `docker save` archive of a Debian 12 image
# with Python, loaded on the test host instead of pulled from a registry.
base_name=gpuhub-test/base:bookworm
base_packages=python3,python3-venv,ca-certificates
base_archive="$cache/base-bookworm-$hash.tar"

build_base_archive() {
    [[ -f "$base_archive" && "${1:-}" != "--force" ]] && return 0
    local base
    base=$(mktemp -d /var/tmp/gpuhub-base.XXXXXX)
    log "debootstrap the base image ($base_packages)"
    debootstrap --variant=minbase --include="$base_packages" "$suite" "$base" "$mirror" \
        >"$base.log" 2>&1 || { tail -n 30 "$base.log" >&2; rm -rf "$base"; exit 1; }
    rm -f "$base.log"
    echo "deb $mirror $suite main" >"$base/etc/apt/sources.list"
    rm -rf "$base"/var/cache/apt/archives/*.deb "$base"/var/lib/apt/lists/*
    mkdir -p "$cache"
    rm -f "$cache"/base-bookworm-*.tar
    tar -C "$base" -c . | docker import -c 'CMD ["/bin/bash"]' - "$base_name" >/dev/null
    docker save "$base_name" -o "$base_archive.tmp"
    mv "$base_archive.tmp" "$base_archive"
    rm -rf "$base"
    log "saved $base_name to $base_archive"
}

if [[ "${1:-}" != "--force" ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    docker tag "$tag" "$repo:latest"
    log "image $tag is current (cached)"
    build_base_archive
    exit 0
fi

command -v debootstrap >/dev/null || {
    log "debootstrap missing: apt-get install debootstrap"
    exit 1
}

root=$(mktemp -d /var/tmp/gpuhub-testhost.XXXXXX)
trap 'rm -rf "$root"' EXIT

log "debootstrap $suite from $mirror (a few minutes)"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    exit 1
}
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main contrib non-free non-free-firmware
deb $mirror $suite-updates main contrib non-free non-free-firmware
deb ${mirror%/debian}/debian-security $suite-security main contrib non-free non-free-firmware
SOURCES

# A container has no consoles, udev or kernel modules to manage: mask what would
# fail there, so `systemctl is-system-running` can report "running".
for unit in getty@tty1.service console-getty.service serial-getty@.service \
    systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    systemd-remount-fs.service systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo gpuhub-testhost >"$root/etc/hostname"
apt-get -o RootDir="$root" clean 2>/dev/null || rm -rf "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/var/lib/apt/lists/*
# An empty package list must look stale, as on a fresh cloud image, so that
# `apt: update_cache: true, cache_valid_time: ...` refreshes it.
touch -d @0 "$root/var/lib/apt/lists"

log "importing as $tag"
tar -C "$root" -c . | docker import \
    -c 'ENV container=docker' \
    -c 'CMD ["/lib/systemd/systemd"]' \
    --message "gpuhub systemd test host ($suite, build.sh $hash)" \
    - "$tag" >/dev/null
docker tag "$tag" "$repo:latest"
log "built $tag"
build_base_archive "${1:-}"
