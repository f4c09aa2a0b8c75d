"""The daemons run, start at boot, and carry only the configuration the role wrote."""

import re

import pytest

pytestmark = [pytest.mark.live]

OVERRIDE = re.compile(r"^[^/\s]+/[^/\s]+/([a-z0-9_]+)\s*=\s*(.*)$")


def test_postfix_runs_and_starts_at_boot(host):
    postfix = host.service("postfix")
    assert postfix.is_enabled
    assert host.run("postfix status").rc == 0, "postfix status: the master process is not running"


def test_dovecot_runs_and_starts_at_boot(host):
    dovecot = host.service("dovecot")
    assert dovecot.is_running
    assert dovecot.is_enabled


# A message Postfix is writing while the check runs sits in incoming/ under the
# temporary name cleanup gives it (PID.microseconds) until it is renamed to its
# queue ID, and postsuper names it as bogus. The earlier tests leave mail in
# Postfix's hands (bounces, notices, retries), so one may be in flight.
IN_FLIGHT = re.compile(r"^postsuper: warning: bogus file name: (incoming/[0-9]+\.[0-9]+)$")


def test_postfix_check_is_clean(host):
    check = host.run("postfix check")
    assert check.rc == 0
    problems = []
    for line in (check.stdout + check.stderr).splitlines():
        in_flight = IN_FLIGHT.match(line)
        if in_flight and renamed_within(host, f"/var/spool/postfix/{in_flight.group(1)}", seconds=30):
            continue
        problems.append(line)
    assert not problems, "\n".join(problems)


def renamed_within(host, path, seconds):
    """Whether a file under a temporary name is gone (renamed) within seconds:
    one command that returns as soon as it is."""
    waited = host.run("timeout %s sh -c 'while [ -e \"$1\" ]; do sleep 0.1; done' - %s", str(seconds), path)
    return waited.rc == 0


def test_postmaster_has_an_alias_for_the_hosts_own_mail(host):
    # Without the map, every smtpd logged "open database /etc/aliases.db" as it
    # started, and lookups of local recipients such as postmaster fail.
    alias_maps = host.check_output("postconf -h alias_maps")
    lookup = host.run("postalias -q postmaster %s", alias_maps)
    assert lookup.rc == 0 and lookup.stdout.strip(), f"{alias_maps}: {lookup.stdout}{lookup.stderr}"
    assert lookup.stderr == "", lookup.stderr


def test_dovecot_offers_no_imap_or_pop3(host):
    listening = host.run("ss -Hltnp")
    assert "dovecot" not in listening.stdout, listening.stdout
    assert host.run("doveconf -h protocols").stdout.strip() == ""


def test_dovecot_authenticates_only_from_the_submission_users_file(host):
    passdbs = host.run("doveconf -n").stdout
    assert "pam" not in passdbs.lower(), passdbs
    assert "passwd-file" in passdbs


@pytest.mark.parametrize("path", ["/etc/dovecot/submission-users"])
def test_users_file_is_not_world_readable(host, path):
    users = host.file(path)
    assert users.user == "root"
    assert users.group == "dovecot"
    assert users.mode & 0o007 == 0, oct(users.mode)


def test_dovecot_answers_user_lookups_to_no_local_user(host):
    userdb = host.file("/run/dovecot/auth-userdb")
    assert userdb.exists, "no auth-userdb socket where Dovecot keeps it"
    assert userdb.mode & 0o077 == 0, f"auth-userdb is {userdb.mode:o}: any local user can look up accounts"


def sender_tables(host):
    """The files of every lmdb table in smtpd_sender_login_maps, with their sources."""
    maps = host.check_output("postconf -xh smtpd_sender_login_maps")
    paths = [m.split(":", 1)[1].rstrip(",}") for m in maps.replace("{", " ").split() if m.startswith("lmdb:")]
    return [f for path in paths for f in (path, path + ".lmdb")]


def test_sender_tables_are_readable_only_by_root_and_postfix(host):
    tables = sender_tables(host)
    assert tables, "smtpd_sender_login_maps names no lmdb table"
    for path in tables:
        table = host.file(path)
        assert table.exists, path
        assert (table.user, table.group) == ("root", "postfix"), f"{path}: {table.user}:{table.group}"
        assert table.mode & 0o007 == 0, f"{path} is {table.mode:o}: every local user reads the customers' addresses"


def test_no_clear_password_in_users_file(host, deployment):
    content = host.file("/etc/dovecot/submission-users").content_string
    for account in deployment.accounts:
        assert account.password not in content, f"clear password of {account.login} in users file"


def master_cf_settings(host, name):
    """The values master.cf gives a parameter, one per service that sets it
    (postconf -P prints service/type/name = value)."""
    settings = (OVERRIDE.match(line) for line in host.run("postconf -P").stdout.splitlines())
    return [m.group(2) for m in settings if m and m.group(1) == name]


def chain_files(host):
    """Every chain file Postfix reads: main.cf's, each SMTP server's in master.cf, and the SNI tables'."""
    values = [host.run("postconf -xh smtpd_tls_chain_files").stdout, *master_cf_settings(host, "smtpd_tls_chain_files")]
    tables = [host.run("postconf -xh tls_server_sni_maps").stdout, *master_cf_settings(host, "tls_server_sni_maps")]
    for table in " ".join(tables).replace(",", " ").split():
        path = table.split(":", 1)[1]
        lines = host.file(path).content_string.splitlines()
        values += [line.split(None, 1)[1] for line in lines if line.strip() and not line.startswith("#")]
    return sorted({path for value in values for path in value.replace(",", " ").split()})


def test_service_private_keys_are_root_only(host):
    files = chain_files(host)
    key_files = [path for path in files if host.file(path).contains("PRIVATE KEY")]
    assert key_files, "no chain file with a private key in Postfix's configuration"
    assert key_files == files, f"chain files without a key: {sorted(set(files) - set(key_files))}"
    for path in key_files:
        key = host.file(path)
        assert key.user == "root", path
        assert key.mode & 0o077 == 0, f"{path} is mode {oct(key.mode)}"
