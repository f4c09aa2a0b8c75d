# shellcheck shell=bash
# Sourced by scripts/deploy-local and scripts/test: make this machine able to run
# the project, from Debian's packages and PyPI only, and reuse what is already there.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\n==> %s\n' "$*"; }

need_packages=()
command -v dockerd >/dev/null || need_packages+=(docker.io)
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_packages+=(python3-venv)
command -v git >/dev/null || need_packages+=(git)
# The module's unit tests and the benchmark run Postfix's real postmap here; the
# validation service's tests read its SQLite store through postmap, run its
# PostgreSQL store against a server in a cluster of their own, and check logins
# against a real Dovecot auth service; they start both servers themselves.
# The validation service's browser test drives Debian's Chromium (never a
# downloaded one) and gives it the test CA with NSS's certutil.
for pkg in postfix postfix-lmdb postfix-cdb postfix-sqlite dovecot-core postgresql chromium chromium-driver \
    libnss3-tools; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need_packages+=("$pkg")
done
if [ ${#need_packages[@]} -gt 0 ]; then
    say "Installing ${need_packages[*]} from Debian's packages"
    apt-get update -q
    # Postfix is needed for postmap only: no configuration, so it starts no daemon.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Nor may a package start Dovecot or PostgreSQL here (policy-rc.d: no service starts). A
    # policy-rc.d the machine already has is left as it is.
    made_policy=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=true
    fi
    install_rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_packages[@]}" ||
        install_rc=$?
    if $made_policy; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$install_rc" -eq 0 ] || exit "$install_rc"
fi

if ! docker info >/dev/null 2>&1; then
    say "Starting the Docker engine"
    if [ -d /run/systemd/system ]; then
        systemctl start docker
    else
        # No init system here: run dockerd ourselves, logging beside the repo.
        mkdir -p "$repo/.cache"
        nohup dockerd >"$repo/.cache/dockerd.log" 2>&1 &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see .cache/dockerd.log" >&2; exit 1; }
fi

stamp=.venv/.requirements-$(sha256sum requirements.txt | cut -c1-16)
if [ ! -e "$stamp" ]; then
    say "Creating the Python environment (.venv) from requirements.txt"
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements.txt
    touch "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
# ansible.cfg in a world-writable directory is ignored; say which one we mean.
export ANSIBLE_CONFIG="$repo/ansible.cfg"

say "Building the Debian 12 and 13 base images (cached until their recipe changes)"
scripts/build-image.sh bookworm
scripts/build-image.sh trixie
