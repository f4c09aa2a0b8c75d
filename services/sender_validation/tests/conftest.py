"""Fixtures: a fresh store, and a real Dovecot auth service in a temporary
directory, configured as the submission_sasl role configures it (PLAIN,
user%domain, a bare login of the primary domain), for the auth client's tests."""

import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest
from ansible_collections.mailops.submission.tests.unit.plugins.modules.allowlist_harness import (
    POSTMAP,
    empty_postfix_config,
)
from sender_validation.store import Store

DOVECOT = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
PASSWORDS = {"alice@runbox.com": "alice-Test-pw1", "bob@hosted.example": "bob-Test-pw2"}
PRIMARY_DOMAIN = "runbox.com"


def crypt(password):
    return subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
    ).stdout.strip()


def users_file(path):
    lines = []
    for address, password in PASSWORDS.items():
        hashed = "{SHA512-CRYPT}" + crypt(password)
        lines.append(f"{address}:{hashed}::::::user={address}")
        local, domain = address.split("@")
        if domain == PRIMARY_DOMAIN:
            lines.append(f"{local}:{hashed}::::::user={address}")
    path.write_text("\n".join(lines) + "\n")


def config(work, series, failure_delay):
    users, socket = work / "users", work / "auth-client"
    common = f"""base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
protocols =
ssl = no
auth_mechanisms = plain
auth_username_translation = %@
auth_username_chars = abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@+
auth_failure_delay = {failure_delay} secs
"""
    listener = f"""service auth {{
  unix_listener {socket} {{
    mode = 0600
  }}
}}
"""
    if series == "2.3":
        return (
            common
            + "disable_plaintext_auth = yes\nauth_username_format = %Lu\n"
            + f"passdb {{\n  driver = passwd-file\n  args = {users}\n}}\n"
            + listener
        )
    return (
        "dovecot_config_version = 2.4.0\ndovecot_storage_version = 2.4.0\n"
        + common
        + "auth_allow_cleartext = no\nauth_username_format = %{user | lower}\n"
        + f"passdb passwd-file {{\n  passwd_file_path = {users}\n}}\n"
        + listener
    )


def start_dovecot(work, failure_delay):
    if DOVECOT is None:
        raise RuntimeError("Dovecot is not installed (apt-get install dovecot-core); scripts/bootstrap.sh installs it")
    version = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, check=True).stdout
    series = ".".join(version.split(".")[:2])
    for name in ("run", "state"):
        (work / name).mkdir()
    users_file(work / "users")
    conf = work / "dovecot.conf"
    conf.write_text(config(work, series, failure_delay))
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    socket = work / "auth-client"
    for _ in range(100):
        if socket.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    if not socket.exists():
        proc.kill()
        log = (work / "dovecot.log").read_text() if (work / "dovecot.log").exists() else ""
        raise RuntimeError(f"Dovecot did not start: {proc.stdout.read().decode()} {log}")
    return proc, socket


def running_dovecot(failure_delay):
    # Dovecot's auth process runs as the dovecot user: pytest's tmp_path (0700,
    # root's) is out of its reach, so the directory is world-searchable.
    with tempfile.TemporaryDirectory(prefix="dovecot-auth-") as tmp:
        work = pathlib.Path(tmp)
        work.chmod(0o755)
        proc, socket = start_dovecot(work, failure_delay)
        try:
            yield str(socket)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def dovecot_socket():
    """The auth-client socket of a Dovecot without a failure delay."""
    yield from running_dovecot(failure_delay=0)


@pytest.fixture
def slow_dovecot_socket():
    """A Dovecot with the role's failure delay (2 s), whose penalty grows per client address."""
    yield from running_dovecot(failure_delay=2)


@pytest.fixture
def store(tmp_path):
    """An empty store, migrated."""
    store = Store(str(tmp_path / "senders.sqlite"))
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def postfix_config(tmp_path):
    """An empty Postfix configuration directory for postmap -c."""
    assert POSTMAP, "Postfix's postmap is not installed"
    config = tmp_path / "postfix"
    config.mkdir()
    empty_postfix_config(config)
    return config
