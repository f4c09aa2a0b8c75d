"""Fixtures: a fresh store, in SQLite and in a real PostgreSQL server of Debian's
with the fleet's schema; and a real Dovecot auth service in a temporary
directory, configured as the submission_sasl role configures it (PLAIN,
user%domain, a bare login of the primary domain), for the auth client's tests."""

import glob
import itertools
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import psycopg
import pytest
from ansible_collections.mailops.submission.plugins.modules.store_schema import apply_migrations
from ansible_collections.mailops.submission.tests.unit.plugins.modules.allowlist_harness import (
    POSTMAP,
    empty_postfix_config,
)
from sender_validation.store import PgStore, Store

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
def store(request, tmp_path):
    """An empty store, migrated; a PgStore where a test parametrizes it
    "postgresql" (indirect=True), otherwise SQLite's."""
    if getattr(request, "param", "sqlite") == "postgresql":
        yield request.getfixturevalue("pg_store")
        return
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


# Debian's PostgreSQL server programs (postgresql-15 on Debian 12, 17 on 13), newest first.
PG_BINDIRS = sorted(
    glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2].split(".")[0]), reverse=True
)


class PostgresServer:
    """A PostgreSQL server of this test run: its own cluster in a temporary directory,
    reached only on a Unix socket there (no TCP port), trusting local connections.
    PostgreSQL refuses to run as root: root runs it as the postgres user."""

    def __init__(self, work):
        if not PG_BINDIRS:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql); scripts/bootstrap.sh does")
        self.bindir, self.work = PG_BINDIRS[0], work
        self.data = work / "data"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(work, "postgres")
        self.program("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.pg_ctl("start")
        self.names = itertools.count()

    def program(self, name, *args):
        subprocess.run([*self.as_owner, f"{self.bindir}/{name}", *map(str, args)], check=True, capture_output=True)

    def pg_ctl(self, action):
        options = f"-c listen_addresses= -k {self.work} -c fsync=off -c full_page_writes=off"
        self.program("pg_ctl", "-D", self.data, "-l", self.work / "log", "-w", "-m", "fast", "-o", options, action)

    def conninfo(self, dbname):
        return f"host={self.work} user=postgres dbname={dbname}"

    def admin(self, statement, parameters=None):
        """statement's rows, run as the superuser in the postgres database."""
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as connection:
            cursor = connection.execute(statement, parameters)
            return cursor.fetchall() if cursor.description else []

    def terminate(self, backend_pid):
        """End a connection from the server's side, as a restart does; once it has ended."""
        assert self.admin("SELECT pg_terminate_backend(%s, 5000)", (backend_pid,)) == [(True,)]


@pytest.fixture(scope="session")
def postgresql():
    """The test run's PostgreSQL server (one per xdist worker), with the fleet's
    schema as Ansible applies it (store_schema) in the template database store."""
    with tempfile.TemporaryDirectory(prefix="postgresql-") as tmp:
        work = pathlib.Path(tmp)
        work.chmod(0o755)
        server = PostgresServer(work)
        try:
            server.admin("CREATE DATABASE store")
            with psycopg.connect(server.conninfo("store")) as connection:
                apply_migrations(connection, check_mode=False)
            yield server
        finally:
            server.pg_ctl("stop")


@pytest.fixture
def pg_store(postgresql):
    """An empty PgStore in a database of its own, with the fleet's schema."""
    name = f"store_{next(postgresql.names)}"
    postgresql.admin(f"CREATE DATABASE {name} TEMPLATE store")
    opened = PgStore(postgresql.conninfo(name))
    yield opened
    opened.close()
    postgresql.admin(f"DROP DATABASE {name} WITH (FORCE)")


# The DMARC records the tests' addresses meet: an unbound of the test's own
# serves them; every other name is NXDOMAIN (nothing leaves the machine).
DMARC_ZONES = {
    ".": [],
    "gmail.example": [],
    "dmarc-reject.example": ['_dmarc.dmarc-reject.example.\t60\tIN\tTXT\t"v=DMARC1; p=reject; rua=mailto:r@x.example"'],
    "dmarc-quarantine.example": ['_dmarc.dmarc-quarantine.example.\t60\tIN\tTXT\t"v=DMARC1; p=quarantine"'],
    "dmarc-none.example": ['_dmarc.dmarc-none.example.\t60\tIN\tTXT\t"v=DMARC1; p=none"'],
    # A parent's record speaks for its subdomains by sp=.
    "parent.example": ['_dmarc.parent.example.\t60\tIN\tTXT\t"v=DMARC1; p=none; sp=reject"'],
    "twice.example": [
        '_dmarc.twice.example.\t60\tIN\tTXT\t"v=DMARC1; p=reject"',
        '_dmarc.twice.example.\t60\tIN\tTXT\t"v=DMARC1; p=none"',
    ],
    "broken.example": ['_dmarc.broken.example.\t60\tIN\tTXT\t"v=DMARC1; p=maybe"'],
}


@pytest.fixture(scope="session")
def dmarc_dns(tmp_path_factory):
    """DmarcSettings that ask the tests' own DNS."""
    from ansible_collections.mailops.submission.tests.unit.plugins.modules.dns_server import serving  # noqa: PLC0415
    from sender_validation.dmarc import DmarcSettings  # noqa: PLC0415

    with serving(tmp_path_factory.mktemp("dns"), DMARC_ZONES) as port:
        yield DmarcSettings(timeout=2, nameservers=("127.0.0.1",), port=port)
