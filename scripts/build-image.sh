#!/usr/bin/env bash
# Build a systemd-capable Debian test image from Debian's packages (no registry pull).
# Usage: scripts/build-image.sh SUITE [FLAVOUR]   (bookworm | trixie; base | full)
#   base: smtp-submission/debian:SUITE, what the default deployment installs
#         (scripts/deploy-local and the default scenario);
#   full: smtp-submission/debian-full:SUITE, the base image with what the other
#         scenarios add (ACME, the fleet's PostgreSQL, the TLS audit), made from
#         the base image's files, so only those packages are fetched.
# Each is tagged <name>:SUITE-<recipe hash> too and rebuilt only when this
# recipe changes, so repeated runs reuse it.
#
# An image already holds the packages the roles and the scenarios' prepare
# steps install, so that no converge downloads them again. The roles still
# install them (apt finds them present): production hosts and idempotence need that.
set -euo pipefail

suite=${1:?usage: build-image.sh SUITE [base|full]}
flavour=${2:-base}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,openssl
# What roles/*/tasks and molecule/*/prepare.yml install: the default
# deployment and its sink, then what the other scenarios add.
base_packages=(postfix postfix-lmdb dovecot-core python3-cryptography python3-flask python3-systemd gunicorn nginx
    sqlite3 python3-lmdb python3-idna redis-server python3-aiosmtpd python3-dnspython python3-dkim unbound)
full_packages=(certbot postgresql postfix-pgsql dovecot-pgsql python3-psycopg testssl.sh socat pebble libfaketime)
recipe_hash=$(sha256sum "$0" | cut -c1-12)
case "$flavour" in
    base) name=smtp-submission/debian ;;
    full) name=smtp-submission/debian-full ;;
    *) echo "unknown flavour '$flavour': base or full" >&2; exit 2 ;;
esac
tag="${name}:${suite}-${recipe_hash}"
base_tag="smtp-submission/debian:${suite}-${recipe_hash}"

# Installs packages into the root at $root, no daemon started, apt's cache
# emptied. The mounts live in a mount namespace of their own, so they end with
# it whatever happens to this script, and /dev is bound read-only (package
# scripts need /dev/null and friends; an exported image has no device nodes).
install_into_root() {
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private bash -euc '
        root=$1
        shift
        mount -t proc proc "$root/proc"
        mount --bind /dev "$root/dev"
        mount -o remount,bind,ro "$root/dev"
        chroot "$root" apt-get update -q
        DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends "$@"
    ' install "$root" "$@" >>"$root.log" 2>&1 || { tail -n 30 "$root.log"; exit 1; }
    rm -f "$root/usr/sbin/policy-rc.d" "$root/var/cache/apt/archives"/*.deb
}

# The build root goes (its mounts went with their namespace), and the
# container an export was made from.
cleanup() {
    if [ -n "${container:-}" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
    rm -rf --one-file-system "$root"
}

import_root() {
    tar -C "$root" --numeric-owner -c . | docker import \
        --change 'CMD ["/lib/systemd/systemd"]' \
        --change 'ENV container=docker' \
        - "$tag" >/dev/null
    rm -f "$root.log"
    echo "built $tag"
}

# On a first deploy scripts/bootstrap.sh may still be installing Docker: no
# image can exist yet, and a base image's root is built before the engine is
# needed. The file SUBMISSION_DOCKER_PENDING names gets a .done beside it with
# the install's exit code.
wait_for_docker() {
    [ -n "${SUBMISSION_DOCKER_PENDING:-}" ] || return 0
    echo "waiting for Docker's install to end"
    local waited=0
    while [ ! -e "$SUBMISSION_DOCKER_PENDING.done" ]; do
        if ! kill -0 "${SUBMISSION_DOCKER_PID:?}" 2>/dev/null && [ ! -e "$SUBMISSION_DOCKER_PENDING.done" ]; then
            echo "Docker's install ended without a result" >&2
            exit 1
        fi
        # apt may wait up to 300 s for another apt's lock, then install.
        if [ "$waited" -ge 900 ]; then
            echo "Docker's install did not end within 900 s" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    docker_failed
}
# Docker's install has already failed: stop before building anything.
docker_failed() {
    [ -n "${SUBMISSION_DOCKER_PENDING:-}" ] && [ -e "$SUBMISSION_DOCKER_PENDING.done" ] || return 0
    [ "$(cat "$SUBMISSION_DOCKER_PENDING.done")" = 0 ] || { echo "Docker did not install or start" >&2; exit 1; }
}

if [ -z "${SUBMISSION_DOCKER_PENDING:-}" ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "image $tag is up to date"
elif [ "$flavour" = full ]; then
    wait_for_docker
    docker image inspect "$base_tag" >/dev/null 2>&1 || { echo "build $base_tag first (build-image.sh $suite)" >&2; exit 1; }
    root=$(mktemp -d /var/tmp/rootfs-"$suite"-full.XXXXXX)
    trap cleanup EXIT
    echo "adding the other scenarios' packages to $base_tag"
    container=$(docker create "$base_tag")
    # By number: the image's users are not this machine's (its postfix user has another uid).
    docker export "$container" | tar -C "$root" --numeric-owner -x
    docker rm "$container" >/dev/null
    container=
    : >"$root/etc/machine-id"
    # The container's own resolver settings are Docker's: apt here uses the
    # host's, and the image keeps none (Docker gives each container its own).
    rm -f "$root/etc/resolv.conf"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    install_into_root "${full_packages[@]}"
    : >"$root/etc/resolv.conf"
    # PostgreSQL runs on the fleet's database host only, whose role enables it.
    chroot "$root" systemctl disable postgresql.service >>"$root.log" 2>&1
    import_root
else
    root=$(mktemp -d /var/tmp/rootfs-"$suite".XXXXXX)
    trap cleanup EXIT
    docker_failed
    echo "debootstrap $suite into $root"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
        || { tail -n 30 "$root.log"; exit 1; }
    # As the role does: the package must not write a main.cf of its own.
    echo "postfix postfix/main_mailer_type select No configuration" | chroot "$root" debconf-set-selections
    install_into_root "${base_packages[@]}"
    # Installed, not running: Debian enables nginx, whose default site takes
    # port 80, which certbot's standalone challenge needs (acme scenario). The
    # validation role enables it, without that site, where it deploys.
    chroot "$root" systemctl disable nginx.service >>"$root.log" 2>&1
    # unbound serves the test zones (DKIM, DMARC) where a scenario starts it.
    chroot "$root" systemctl disable unbound.service >>"$root.log" 2>&1
    # Units that cannot work inside a container and only slow or break the boot.
    for unit in systemd-remount-fs.service systemd-udevd.service systemd-udev-trigger.service \
                getty.target console-getty.service systemd-firstboot.service \
                systemd-resolved.service sys-kernel-config.mount sys-kernel-debug.mount; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    : >"$root/etc/machine-id"
    wait_for_docker
    import_root
fi
docker tag "$tag" "${name}:${suite}"
