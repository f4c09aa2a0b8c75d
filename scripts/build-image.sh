#!/usr/bin/env bash
# Build a systemd-capable Debian test image from Debian's packages (no registry pull).
# Usage: scripts/build-image.sh SUITE   (bookworm | trixie)
# The image is tagged smtp-submission/debian:SUITE-<recipe hash>; it is rebuilt only when
# this recipe changes, so repeated test runs reuse it.
#
# It already holds the packages the roles and the scenarios' prepare steps
# install, so that no converge downloads them again. The roles still install
# them (apt finds them present): production hosts and idempotence need that.
set -euo pipefail

suite=${1:?usage: build-image.sh SUITE}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,openssl
# What roles/*/tasks and molecule/*/prepare.yml install: service, then test fixtures.
service_packages=(postfix postfix-lmdb dovecot-core certbot python3-cryptography python3-flask python3-systemd gunicorn nginx sqlite3 python3-lmdb postfwd
    postgresql postfix-pgsql dovecot-pgsql python3-psycopg)
fixture_packages=(python3-aiosmtpd testssl.sh socat pebble libfaketime)
recipe_hash=$(sha256sum "$0" | cut -c1-12)
tag="smtp-submission/debian:${suite}-${recipe_hash}"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "image $tag is up to date"
else
    root=$(mktemp -d /var/tmp/rootfs-"$suite".XXXXXX)
    trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT
    echo "debootstrap $suite into $root"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
        || { tail -n 30 "$root.log"; exit 1; }
    # As the role does: the package must not write a main.cf of its own.
    echo "postfix postfix/main_mailer_type select No configuration" | chroot "$root" debconf-set-selections
    # No daemon may start inside the build root.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    mount -t proc proc "$root/proc"
    chroot "$root" apt-get update -q >>"$root.log" 2>&1
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends \
        "${service_packages[@]}" "${fixture_packages[@]}" >>"$root.log" 2>&1 \
        || { umount "$root/proc"; tail -n 30 "$root.log"; exit 1; }
    umount "$root/proc"
    # Installed, not running: Debian enables nginx, whose default site takes
    # port 80, which certbot's standalone challenge needs (acme scenario). The
    # validation role enables it, without that site, where it deploys.
    chroot "$root" systemctl disable nginx.service >>"$root.log" 2>&1
    # PostgreSQL runs on the fleet's database host only, whose role enables it.
    chroot "$root" systemctl disable postgresql.service >>"$root.log" 2>&1
    rm -f "$root/usr/sbin/policy-rc.d" "$root.log"
    # Units that cannot work inside a container and only slow or break the boot.
    for unit in systemd-remount-fs.service systemd-udevd.service systemd-udev-trigger.service \
                getty.target console-getty.service systemd-firstboot.service \
                systemd-resolved.service sys-kernel-config.mount sys-kernel-debug.mount; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    : >"$root/etc/machine-id"
    apt_clean="$root/var/cache/apt/archives"
    rm -f "$apt_clean"/*.deb
    tar -C "$root" -c . | docker import \
        --change 'CMD ["/lib/systemd/systemd"]' \
        --change 'ENV container=docker' \
        - "$tag" >/dev/null
    echo "built $tag"
fi
docker tag "$tag" "smtp-submission/debian:${suite}"
