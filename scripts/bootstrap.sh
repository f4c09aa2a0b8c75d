# shellcheck shell=bash
# Sourced by scripts/deploy-local and scripts/test: make this machine able to run
# the project, from Debian's packages and PyPI only, and reuse what is already there.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\n==> %s\n' "$*"; }

# Set below while Docker installs in the background; never inherited.
unset SUBMISSION_DOCKER_PENDING SUBMISSION_DOCKER_PID

# Installs the Debian packages named that are not installed yet. Package
# scripts may not start a daemon here (policy-rc.d: no service starts); a
# policy-rc.d the machine already has is left as it is.
install_packages() {
    local pkg missing=() made_policy=false install_rc=0
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "Installing ${missing[*]} from Debian's packages"
    # Another apt (unattended-upgrades on a fresh machine) is waited for, not failed on.
    apt-get -o DPkg::Lock::Timeout=300 update -q || return
    # Postfix is needed for postmap only: no configuration, so it starts no daemon.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
        "${missing[@]}" || install_rc=$?
    if $made_policy; then rm -f /usr/sbin/policy-rc.d; fi
    return "$install_rc"
}

# What deploying needs: Docker, debootstrap for the images, a Python venv.
deploy_packages=(debootstrap git)
python3 -c 'import ensurepip, venv' 2>/dev/null || deploy_packages+=(python3-venv)
install_packages "${deploy_packages[@]}"

# Explicit returns: this also runs where set -e does not apply (left of ||).
start_docker() {
    local log="$repo/.cache/dockerd.log"
    say "Starting the Docker engine"
    if [ -d /run/systemd/system ]; then
        log="journalctl -u docker"
        systemctl start docker || return
    else
        # No init system here: run dockerd ourselves, logging beside the repo.
        mkdir -p "$repo/.cache" || return
        nohup dockerd >"$log" 2>&1 &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $log" >&2; return 1; }
}

# Docker's packages are the largest download of a first deploy: on a machine
# without them they install while debootstrap builds the images' roots and pip
# makes the venv. build-image.sh builds a root, then waits for the engine:
# SUBMISSION_DOCKER_PENDING names a file that gets the install's exit code
# (written whole, as PENDING.done), SUBMISSION_DOCKER_PID the installing job.
docker_pid=
if docker info >/dev/null 2>&1; then
    :
elif command -v dockerd >/dev/null; then
    start_docker
else
    SUBMISSION_DOCKER_PENDING=$(mktemp)
    export SUBMISSION_DOCKER_PENDING
    (
        rc=0
        { install_packages docker.io && start_docker; } || rc=$?
        echo "$rc" >"$SUBMISSION_DOCKER_PENDING.tmp" && mv "$SUBMISSION_DOCKER_PENDING.tmp" "$SUBMISSION_DOCKER_PENDING.done"
        exit "$rc"
    ) >"$SUBMISSION_DOCKER_PENDING" 2>&1 &
    docker_pid=$!
    export SUBMISSION_DOCKER_PID=$docker_pid
    # Should this script stop before waiting for it, no apt is left running.
    trap 'kill "$docker_pid" 2>/dev/null || true' EXIT
fi

# The venv with what deploying needs (requirements-deploy.txt), made while the
# images build; scripts/test adds the test tools (requirements.txt).
make_venv() {
    local stamp
    stamp=.venv/.requirements-deploy-$(sha256sum requirements-deploy.txt | cut -c1-16)
    [ ! -e "$stamp" ] || return 0
    say "Creating the Python environment (.venv) from requirements-deploy.txt"
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements-deploy.txt
    touch "$stamp"
}

# Builds the images named (SUITE:FLAVOUR ...) side by side; fails if any failed.
build_images() {
    local spec pids=() rc=0
    for spec in "$@"; do
        scripts/build-image.sh "${spec%%:*}" "${spec##*:}" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    return "$rc"
}

say "Building the Debian 12 and 13 base images side by side (cached until their recipe changes), and the venv"
venv_log=$(mktemp)
make_venv >"$venv_log" 2>&1 &
venv_pid=$!
images_rc=0
build_images bookworm:base trixie:base || images_rc=$?
venv_rc=0
wait "$venv_pid" || venv_rc=$?
cat "$venv_log"
rm -f "$venv_log"
docker_rc=0
if [ -n "$docker_pid" ]; then
    wait "$docker_pid" || docker_rc=$?
    trap - EXIT
    cat "$SUBMISSION_DOCKER_PENDING"
    rm -f "$SUBMISSION_DOCKER_PENDING" "$SUBMISSION_DOCKER_PENDING.done"
    unset SUBMISSION_DOCKER_PENDING SUBMISSION_DOCKER_PID
fi
if [ "$venv_rc" -ne 0 ] || [ "$images_rc" -ne 0 ] || [ "$docker_rc" -ne 0 ]; then
    echo "the venv (rc $venv_rc), an image (rc $images_rc) or Docker's install (rc $docker_rc) failed" >&2
    exit 1
fi
export PATH="$repo/.venv/bin:$PATH"
# ansible.cfg in a world-writable directory is ignored; say which one we mean.
export ANSIBLE_CONFIG="$repo/ansible.cfg"

# scripts/test's part: the packages the unit tests run for real, the test
# tools, and the images of the other scenarios.
#   The module's unit tests and the benchmark run Postfix's real postmap here; the
#   validation service's tests read its SQLite store through postmap, run its
#   PostgreSQL store against a server in a cluster of their own, and check logins
#   against a real Dovecot auth service; they start both servers themselves.
#   The DNS records module's tests ask a real unbound serving the zones it prints.
#   The milter's per-login limit tests count in a real redis-server they start.
#   The validation service's browser test drives Debian's Chromium (never a
#   downloaded one) and gives it the test CA with NSS's certutil.
prepare_for_tests() {
    local stamp
    install_packages postfix postfix-lmdb postfix-cdb postfix-sqlite dovecot-core postgresql chromium \
        chromium-driver libnss3-tools unbound redis-server
    stamp=.venv/.requirements-test-$(cat requirements-deploy.txt requirements.txt | sha256sum | cut -c1-16)
    if [ ! -e "$stamp" ]; then
        say "Adding the test tools to .venv (requirements.txt)"
        .venv/bin/pip install -q -r requirements.txt
        touch "$stamp"
    fi
    say "Building the other scenarios' images side by side (cached until their recipe changes)"
    build_images bookworm:full trixie:full
}
