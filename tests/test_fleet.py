"""Fleet mode: MTAs that share accounts and senders through one PostgreSQL database.

Run against the fleet's MTAs (group submission); the database host is reached
as submission_fleet_database.inventory_host names it, in the same inventory.
The outage tests stop and restart the database: every MTA of the fleet sees
them, so the fleet scenario verifies its hosts one after another.
"""

import base64
import json
import threading
import time
import uuid

import dkim
import pytest
import testinfra
from ansible_collections.mailops.submission.plugins.module_utils.fleet_database import (
    fleet_database_settings,
    fleet_parameters,
)
from deployment import Deployment
from host_probe import (
    LOAD_B64,
    HostSecrets,
    Probe,
    authenticated,
    drain_queue,
    first_answer_to_rcpt,
    load_plan,
    message,
    sink_copies,
)
from test_dkim import MANIFEST, stored
from test_validation_service import Web
from testinfra.modules.ansible import AnsibleException
from validation_flow import confirmation_link, new_address, rcpt_code

pytestmark = [pytest.mark.fleet, pytest.mark.fleet_only]
# The tests that stop or restart the database run after every other test of
# the run (tests/conftest.py), so that no other test meets the outage's tail.
outage = pytest.mark.database_outage

# One statement as a database role, with the role's own passfile on the host;
# prints {"rows": [...]} or {"sqlstate": ..., "error": ...}. The statement runs
# in a transaction that is rolled back: a write that is allowed changes nothing.
_AS_ROLE = r"""
import json, sys
import psycopg
conninfo, statement = sys.argv[1], sys.argv[2]
try:
    with psycopg.connect(conninfo) as connection:
        cursor = connection.execute(statement)
        rows = cursor.fetchall() if cursor.description else []
        connection.rollback()
    print(json.dumps({"rows": [list(row) for row in rows]}))
except psycopg.Error as exc:
    print(json.dumps({"sqlstate": exc.sqlstate, "error": str(exc).strip()}))
"""
AS_ROLE_B64 = base64.b64encode(_AS_ROLE.encode()).decode()
PASSFILES = {
    "submission_postfix": "/etc/postfix/submission/pgpass",
    "submission_milter": "/etc/from-check/pgpass",
    "submission_validation": "/etc/sender-validation/pgpass",
}
INSUFFICIENT_PRIVILEGE = "42501"
CHECK_VIOLATION = "23514"
INSERT_PAIR = "INSERT INTO validated_senders VALUES ('x@gmail.example', 'alice@runbox.com', 'user', 0)"


class Fleet:
    def __init__(self, host, variables, config, deployment):
        self.host, self.config, self.deployment = host, config, deployment
        inventory = config.option.ansible_inventory
        self.settings = variables["submission_fleet_database"]
        self.db = testinfra.get_host(f"ansible://{self.settings['inventory_host']}", ansible_inventory=inventory)
        names = [name for name in variables["groups"]["submission"] if name != variables["inventory_hostname"]]
        self.position = sorted(variables["groups"]["submission"]).index(variables["inventory_hostname"])
        self.others = [testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory) for name in names]
        self.cluster = self.db.check_output("pg_lsclusters --no-header").split()[:2]

    def conninfo(self, user, **overrides):
        """The connection string the services use (fleet_database), with overrides."""
        parts = fleet_parameters(self.settings, user, PASSFILES.get(user, "/nonexistent"))
        parts.update(overrides)
        return " ".join(f"{key}={value}" for key, value in parts.items())

    def as_role(self, user, statement, **overrides):
        cmd = self.host.run(
            'python3 -c "$(echo %s | base64 -d)" %s %s', AS_ROLE_B64, self.conninfo(user, **overrides), statement
        )
        assert cmd.rc == 0, cmd.stderr
        return json.loads(cmd.stdout)

    def other_probes(self):
        accounts = self.deployment.verification_accounts
        return [Probe(other, HostSecrets.of(other, accounts, self.config)) for other in self.others]

    def probe(self):
        return Probe(self.host, HostSecrets.of(self.host, self.deployment.verification_accounts, self.config))

    def every_mta_back(self, probe, timeout=150, in_a_row=3):
        """Seconds until sessions on every MTA of the fleet get their messages
        accepted, in_a_row of them one after another; meanwhile any refusal must
        be temporary (4xx). Each of Postfix's proxymap processes and each of
        Dovecot's connections finds its own connection broken after a restart."""
        account = self.deployment.account(self.deployment.domain)
        endpoint, recipient = self.deployment.endpoints[0], self.deployment.recipient
        started = time.monotonic()
        for each in [probe, *self.other_probes()]:
            answer, accepted = {}, 0
            while time.monotonic() - started < timeout:
                mail = message(account.address, recipient, uuid.uuid4().hex)
                answer = each.one(authenticated(endpoint, account, recipient, data=mail))
                accepted = accepted + 1 if answer.get("data", [0])[0] == 250 else 0
                if accepted == in_a_row:
                    break
                if accepted:
                    continue
                codes = [answer.get(step, [0])[0] for step in ("auth", "mail", "data")]
                codes.append(first_answer_to_rcpt(answer)[0])
                assert not [code for code in codes if code >= 500], f"a permanent answer while it recovers: {answer}"
                time.sleep(1)
            assert answer.get("data", [0])[0] == 250, f"no message accepted within {timeout} s of the database's return"
        return time.monotonic() - started

    def database(self, action):
        unit = f"postgresql@{self.cluster[0]}-{self.cluster[1]}"
        self.db.check_output("systemctl %s %s", action, unit)


@pytest.fixture(scope="module")
def fleet(host, request, deployment):
    return Fleet(host, host.ansible.get_variables(), request.config, deployment)


@pytest.fixture(scope="module")
def whole_fleet(request):
    """The fleet seen from its first MTA, for the tests that run once for the
    whole fleet (the database's outages, its modules) and watch every MTA."""
    config = request.config
    hosts = testinfra.get_hosts(
        config.option.hosts.split(","),
        connection=config.option.connection,
        ansible_inventory=config.option.ansible_inventory,
        force_ansible=config.option.force_ansible,
    )
    first = min(hosts, key=lambda each: each.backend.get_pytest_id())
    variables = first.ansible.get_variables()
    return Fleet(first, variables, config, Deployment(variables))


@pytest.mark.parametrize(
    ("user", "statement", "allowed"),
    [
        ("submission_postfix", "SELECT login FROM sender_logins WHERE sender = 'alice@runbox.com'", True),
        ("submission_postfix", "SELECT password_hash FROM accounts", False),
        (
            "submission_postfix",
            "INSERT INTO validated_senders VALUES ('x@gmail.example', 'alice@runbox.com', 'user', 0)",
            False,
        ),
        ("submission_postfix", "DELETE FROM account_aliases", False),
        ("submission_milter", "SELECT login FROM sender_logins WHERE sender = '@hosted.example'", True),
        ("submission_milter", "UPDATE accounts SET password_hash = ''", False),
        (
            "submission_milter",
            "INSERT INTO validated_senders VALUES ('x@gmail.example', 'alice@runbox.com', 'user', 0)",
            False,
        ),
        (
            "submission_validation",
            "INSERT INTO validated_senders VALUES ('x@gmail.example', 'alice@runbox.com', 'user', 0)",
            True,
        ),
        ("submission_validation", "DELETE FROM validation_requests", True),
        ("submission_validation", "SELECT password_hash FROM accounts", False),
        ("submission_validation", "INSERT INTO account_domains VALUES ('gmail.example', 'alice@runbox.com')", False),
        ("submission_validation", "CREATE TABLE stolen (x text)", False),
    ],
)
def test_each_service_role_may_do_what_its_service_needs_and_nothing_more(fleet, user, statement, allowed):
    answer = fleet.as_role(user, statement)
    if allowed:
        assert "rows" in answer, f"{user} must be able to: {statement}: {answer}"
    else:
        assert answer.get("sqlstate") == INSUFFICIENT_PRIVILEGE, f"{user} must not: {statement}: {answer}"


@pytest.mark.parametrize(
    "sender", ["@gmail.example", "Not An Address@gmail.example", "=?utf-8?q?x?=@gmail.example", "sales@hosted.example"]
)
def test_the_validation_services_role_may_insert_addresses_only(fleet, sender):
    """As on a single host, a validated sender is one plain address outside the
    hosted domains: a row for a whole domain would let its login send as anyone
    there, one at a hosted domain as its owner's addresses."""
    # The test's own constants, no input.
    statement = f"INSERT INTO validated_senders VALUES ('{sender}', 'alice@runbox.com', 'user', 0)"  # noqa: S608
    answer = fleet.as_role("submission_validation", statement)
    assert answer.get("sqlstate") == CHECK_VIOLATION and "validated_senders_" in answer["error"], answer


def test_a_newly_hosted_domain_is_its_owners_and_no_longer_its_old_validators(fleet, probe, deployment):
    """A user validated an address at a domain the provider did not host; the
    domain becomes an account's (a row in account_domains, as fleet_accounts or
    an administrator's psql adds it): the owner sends as the address and the
    user no more, as on a single host, and the user's row is gone with it."""
    validator = deployment.account(deployment.domain)
    owner = next(each for each in deployment.accounts if not each.address.endswith("@" + deployment.domain))
    domain = f"new-{uuid.uuid4().hex[:12]}.example"
    address = f"info@{domain}"
    # The test's own names, no input.
    _db_rows(fleet, f"INSERT INTO validated_senders VALUES ('{address}', '{validator.address}', 'user', 0)")  # noqa: S608
    try:
        assert rcpt_code(probe, deployment, validator, address)[0] == 250, "the validated address before"
        assert rcpt_code(probe, deployment, owner, address)[0] == 553, "another login before the domain is hosted"
        _db_rows(fleet, f"INSERT INTO account_domains VALUES ('{domain}', '{owner.address}')")  # noqa: S608
        assert rcpt_code(probe, deployment, owner, address)[0] == 250, f"{owner.address}, {domain}'s owner now"
        assert rcpt_code(probe, deployment, validator, address)[0] == 553, "the old validator, once it is hosted"
        left = _db_rows(fleet, f"SELECT count(*) FROM validated_senders WHERE sender = '{address}'")  # noqa: S608
        assert left == "0", "the validator's row at the hosted domain stayed"
    finally:
        _db_rows(fleet, f"DELETE FROM account_domains WHERE domain = '{domain}'")  # noqa: S608
        _db_rows(fleet, f"DELETE FROM validated_senders WHERE sender = '{address}'")  # noqa: S608


def test_a_changed_password_or_a_removed_account_ends_its_web_sessions_and_no_others(whole_fleet):
    """The web service finds a session by its row in web_sessions: a new password
    (as fleet_accounts or an administrator's psql writes it) or the account's
    removal deletes the login's rows in the same transaction; the same password
    written again, and other logins, keep theirs."""
    fleet, tag = whole_fleet, uuid.uuid4().hex[:12]
    login, other = f"sessions-{tag}@runbox.com", f"others-{tag}@runbox.com"
    old_hash, new_hash = f"$6$old{tag}$x", f"$6$new{tag}$x"

    def sessions(of):
        # The test's own names, no input.
        return _db_rows(fleet, f"SELECT count(*) FROM web_sessions WHERE login = '{of}'")  # noqa: S608

    # The test's own names and hashes, no input.
    _db_rows(fleet, f"INSERT INTO accounts VALUES ('{login}', '{old_hash}'), ('{other}', '{old_hash}')")  # noqa: S608
    try:
        for each, n in ((login, 1), (login, 2), (other, 1)):
            row = f"('{tag}-{each}-{n}', '{each}', 0, 9999999999)"
            _db_rows(fleet, f"INSERT INTO web_sessions VALUES {row}")  # noqa: S608
        _db_rows(fleet, f"UPDATE accounts SET password_hash = '{old_hash}' WHERE login = '{login}'")  # noqa: S608
        assert sessions(login) == "2", "the same password written again ended the sessions"
        _db_rows(fleet, f"UPDATE accounts SET password_hash = '{new_hash}' WHERE login = '{login}'")  # noqa: S608
        assert sessions(login) == "0", "a changed password left the login's web sessions"
        assert sessions(other) == "1", "another login's session ended with it"
        _db_rows(fleet, f"DELETE FROM accounts WHERE login = '{other}'")  # noqa: S608
        assert sessions(other) == "0", "a removed account kept its web session"
    finally:
        _db_rows(fleet, f"DELETE FROM accounts WHERE login IN ('{login}', '{other}')")  # noqa: S608
        _db_rows(fleet, f"DELETE FROM web_sessions WHERE id_sha256 LIKE '{tag}-%'")  # noqa: S608


def test_the_pairs_postfix_reads_are_the_inventorys(fleet):
    """The view holds each account, alias, owned domain and validated sender."""
    expected = {
        "alice@runbox.com": ["alice@runbox.com"],
        "alice.smith@runbox.com": ["alice@runbox.com"],
        "alice.ext@gmail.example": ["alice@runbox.com"],
        "@hosted.example": ["bob@hosted.example"],
        "bob@hosted.example": ["bob@hosted.example"],
        "nobody@runbox.com": [],
    }
    for sender, logins in expected.items():
        # The inventory's own fixture addresses, no user input.
        query = f"SELECT DISTINCT login FROM sender_logins WHERE sender = '{sender}'"  # noqa: S608
        answer = fleet.as_role("submission_postfix", query)
        assert sorted(row[0] for row in answer["rows"]) == logins, (sender, answer)


def test_the_database_takes_verified_tls_from_the_fleet_only(fleet):
    address = fleet.host.check_output("getent hosts %s", fleet.settings["host"]).split()[0]
    wrong_name = fleet.as_role("submission_postfix", "SELECT 1", host=address)
    assert "rows" not in wrong_name and "does not match" in wrong_name["error"], wrong_name
    plain = fleet.as_role("submission_postfix", "SELECT 1", sslmode="disable")
    assert "rows" not in plain and "no encryption" in plain["error"], plain
    other_ca = fleet.as_role("submission_postfix", "SELECT 1", sslrootcert="/etc/ssl/certs/ca-certificates.crt")
    assert "rows" not in other_ca and "certificate verify failed" in other_ca["error"], other_ca
    # From an address that is not one of the MTAs' (the database host's own, over TCP).
    outsider = fleet.db.run(
        "psql %s -c 'SELECT 1'", f"host={address} dbname=submission user=submission_postfix sslmode=require"
    )
    assert outsider.rc != 0 and "pg_hba.conf rejects connection" in outsider.stderr, outsider.stderr


def test_a_confirmation_on_one_host_lets_the_sender_through_on_the_others(fleet, host, probe, deployment, sink):
    """The user confirms on this host's page; the other MTAs honour it at their next MAIL FROM."""
    secrets = HostSecrets.of(host, deployment.verification_accounts, fleet.config)
    web = Web(host, f"https://senders.{deployment.domain}", secrets)
    # A login of its own for each host: the confirmation mails a login may ask
    # for an hour are counted fleet-wide (the request log is in the database).
    own_domain = [account for account in deployment.accounts if account.address.endswith("@" + deployment.domain)]
    account = own_domain[fleet.position % len(own_domain)]
    sender = new_address()
    fleet.every_mta_back(probe)
    other_probes = fleet.other_probes()
    assert other_probes, "a fleet has more than one MTA"
    for other in other_probes:
        code = rcpt_code(other, deployment, account, sender)
        assert code[0] == 553, f"an unvalidated address must be refused first: {code}"
    browser = web.session()
    browser.log_in(account)
    added = browser.post_form("/", "/senders/add", address=sender)
    assert added["status"] == 200, added
    link = confirmation_link(host, sink, sender, web.base_url)
    confirmed = browser.post_form(link[len(web.base_url) :], link, action="confirm")
    assert confirmed["status"] == 200 and f"may now send as {sender}" in confirmed["body"], confirmed
    confirmed_at = time.monotonic()
    for other in other_probes:
        code = rcpt_code(other, deployment, account, sender)
        print(f"from the confirming POST to the other host's RCPT answer: {time.monotonic() - confirmed_at:.3f} s")
        assert code[0] == 250, f"{account.login} as {sender} on another host after confirming here: {code}"
    removed = browser.post_form("/", "/senders/remove", address=sender)
    assert removed["status"] == 302, removed
    for other in other_probes:
        code = rcpt_code(other, deployment, account, sender)
        assert code[0] == 553, f"a removed address must be refused everywhere: {code}"


def _published_records(other):
    """{record name: TXT value} as the DNS would serve them for another MTA's keys (a hosted domain's
    selector name answers with its CNAME target's record, as a verifier's resolver follows it)."""
    manifest = json.loads(other.check_output("cat %s", MANIFEST))
    provider = manifest["provider_domain"]
    records = {}
    for key in manifest["keys"]:
        kind = "rsa" if key["algorithm"] == "rsa-sha256" else "ed25519"
        text = f"v=DKIM1; k={kind}; p={key['public']}"
        target = f"{key['selector']}._domainkey.{provider}"
        if key["domain"] != provider:
            target = f"{key['selector']}.{key['domain']}._domainkey.{provider}"
        records[target] = records[f"{key['selector']}._domainkey.{key['domain']}"] = text
    return records


def test_every_mta_signs_with_the_same_keys(fleet, host, probe, deployment, sink):
    """The keys are made once, in the store on the controller: every MTA holds the same files, and a
    message signed here verifies (dkimpy, on the controller) against the keys another MTA holds."""
    listing = "cd %s && sha256sum keys.json */*.pem"
    directory = MANIFEST.rsplit("/", 1)[0]
    here = host.check_output(listing, directory)
    assert here.count(".pem") == 4, here
    endpoint = deployment.endpoints[0]
    alice = deployment.account(deployment.domain)
    bob = next(account for account in deployment.accounts if not account.address.endswith(f"@{deployment.domain}"))
    raws = {}
    for account in (alice, bob):
        token = uuid.uuid4().hex
        mail = message(account.address, deployment.recipient, token)
        answer = probe.one(authenticated(endpoint, account, deployment.recipient, data=mail))
        assert answer.get("data", [0])[0] == 250, answer
        raws[account.address] = stored(host, sink, token)
    for other in fleet.others:
        assert other.check_output(listing, directory) == here, "another MTA holds other keys"
        records = _published_records(other)

        def lookup(name, timeout=5, records=records):
            name = (name.decode() if isinstance(name, bytes) else name).rstrip(".")
            return records[name].encode() if name in records else None

        for address, stored_raw in raws.items():
            raw = stored_raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            verdicts = [dkim.DKIM(raw).verify(idx=index, dnsfunc=lookup) for index in range(2)]
            print(f"{address} through {host.backend.get_pytest_id()}, keys of another MTA: {verdicts}")
            assert raw.count(b"DKIM-Signature:") == 2 and verdicts == [True, True], address
            # The control: a changed body fails.
            changed = raw.replace(b"Token ", b"Token changed ")
            assert not _verifies(changed, lookup), address


def _verifies(raw, dnsfunc):
    """dkimpy's verdict on the first signature: a body hash mismatch raises rather than answers False."""
    try:
        return dkim.DKIM(raw).verify(idx=0, dnsfunc=dnsfunc)
    except dkim.DKIMException:
        return False


def _main_pids(host):
    """The services' main processes: a restart of any would change its pid."""
    pids = {"postfix": host.check_output("cat /var/spool/postfix/pid/master.pid").strip()}
    for unit in ("dovecot", "from-check", "sender-validation"):
        pids[unit] = host.check_output("systemctl show -p MainPID --value %s", unit)
    return pids


@outage
def test_a_database_outage_gives_temporary_errors_only_and_service_resumes_by_itself(whole_fleet):
    fleet, deployment, probe = whole_fleet, whole_fleet.deployment, whole_fleet.probe()
    account = deployment.account(deployment.domain)
    endpoint = deployment.endpoints[0]
    mtas = [(fleet.host, probe), *zip(fleet.others, fleet.other_probes(), strict=True)]
    before = [_main_pids(host) for host, _ in mtas]
    fleet.every_mta_back(probe)
    # Logged in while the database is up; its MAIL FROM comes during the outage.
    # The probe creates the marker once it has logged in and begins its pause.
    marker = fleet.host.check_output("mktemp -u /tmp/paused-session.XXXXXX")
    session = authenticated(endpoint, account, deployment.recipient, pause_before_mail=8, pause_marker=marker)
    paused = {}
    for _ in range(5):
        worker = threading.Thread(target=lambda: paused.update(probe.one(session)))
        worker.start()
        while worker.is_alive() and not fleet.host.file(marker).exists:
            fleet.host.run("for i in $(seq 10); do [ -e %s ] && exit 0; sleep 0.1; done; exit 1", marker)
        if fleet.host.file(marker).exists:
            break
        # Its login did not get through (a connection the last restart broke): again.
        worker.join()
    fleet.host.run("rm -f %s", marker)
    fleet.database("stop")
    stopped_at = time.monotonic()
    try:
        logins = [
            each.one(authenticated(endpoint, account, deployment.recipient, source=Probe.unseen_source(endpoint)))
            for _, each in mtas
        ]
        worker.join()
    finally:
        fleet.database("start")
    started_at = time.monotonic()
    # smtpd applies the sender restrictions at RCPT (smtpd_delay_reject).
    sender_check = first_answer_to_rcpt(paused)
    auth_codes = [login.get("auth", [0])[0] for login in logins]
    print(f"outage of {started_at - stopped_at:.1f} s: AUTH {auth_codes} on each MTA; sender check {sender_check}")
    assert paused.get("auth", [0])[0] == 235, paused
    assert sender_check[0] == 451, f"the sender's check during the outage: {paused}"
    assert auth_codes == [454] * len(mtas), f"AUTH during the outage: {logins}"
    # Back: each MTA's sessions get their messages accepted, with nothing restarted.
    back = fleet.every_mta_back(probe)
    print(f"every MTA back {back:.1f} s after the database")
    assert [_main_pids(host) for host, _ in mtas] == before, "a service was restarted"


@outage
def test_a_database_restart_under_load_loses_nothing_and_refuses_nothing_for_good(whole_fleet):
    fleet, deployment, probe, host = whole_fleet, whole_fleet.deployment, whole_fleet.probe(), whole_fleet.host
    sink = deployment.sink_maildir
    run_id = "dbrestart-" + uuid.uuid4().hex[:10]
    plan = load_plan(deployment, run_id, clients=6)
    fleet.every_mta_back(probe)
    plan_file = HostSecrets.of(host, deployment.verification_accounts, fleet.config).put(json.dumps(plan))
    out = host.check_output("mktemp")
    pid = host.check_output(
        'nohup python3 -c "$(echo %s | base64 -d)" %s > %s 2>&1 & echo $!', LOAD_B64, plan_file, out
    ).strip()
    # The restart comes once the load is under way: its first messages delivered.
    assert (
        host.run(
            "for i in $(seq 300); do [ $(grep -rl '^X-Load-Token: %s-' %s/new 2>/dev/null | wc -l) -ge 20 ] && exit 0;"
            " sleep 0.1; done; exit 1",
            run_id,
            sink,
        ).rc
        == 0
    ), "the load delivered fewer than 20 messages in 30 s"
    fleet.database("restart")
    assert host.run("for i in $(seq 120); do kill -0 %s 2>/dev/null || exit 0; sleep 1; done; exit 1", pid).rc == 0
    host.run("rm -f %s", plan_file)
    result = json.loads(host.file(out).content_string)
    host.run("rm -f %s", out)
    errors = result["errors"]
    print(f"{len(result['accepted'])} accepted, {len(result['deferred'])} deferred, errors {errors}")
    assert result["deferred"] or errors, "nothing was deferred: the restart did not happen under load"
    assert not result["wrong"], f"answers other than 250, 553 for a foreign sender, or 4xx: {result['wrong'][:5]}"
    permanent = {key: entry for key, entry in errors.items() if key.split()[-1].startswith("5")}
    assert not permanent, f"permanent refusals during the restart: {permanent}"
    accepted, deferred = set(result["accepted"]), set(result["deferred"])
    assert len(accepted) > 30, f"only {len(accepted)} messages accepted: {errors}"
    assert drain_queue(host), "the queue did not drain in 120 s"
    copies = sink_copies(host, sink, run_id)
    assert not deferred & copies.keys(), f"answered 4xx but delivered: {sorted(deferred & copies.keys())[:5]}"
    missing = sorted(accepted - copies.keys())
    assert not missing, f"{len(missing)} of {len(accepted)} messages answered 250 are not in the sink: {missing[:5]}"
    doubled = sorted(token for token, n in copies.items() if n > 1)
    assert not doubled, f"delivered twice: {doubled[:5]}"
    print(f"every MTA back {fleet.every_mta_back(probe):.1f} s after the load run")


def _module_failure(fleet, module, args):
    """The result of a module run on the database host that must fail (testinfra
    raises for it, or, with newer ansible-core, returns it without 'failed')."""
    try:
        result = fleet.db.ansible(module, json.dumps(args), check=False)
    except AnsibleException as exc:
        result = exc.result
    assert "msg" in result and not result.get("changed"), f"{module} did not fail: {result}"
    return result["msg"]


def _db_rows(fleet, query):
    """A query's rows as psql prints them, as the database host's postgres (peer)."""
    return fleet.db.check_output("psql -U postgres -At -d submission -c %s", query)


def test_the_allowlist_module_writes_nothing_for_a_bad_entry_nor_in_check_mode(whole_fleet):
    fleet = whole_fleet
    module = "mailops.submission.sender_allowlist"
    before = _db_rows(fleet, "SELECT count(*) FROM validated_senders")
    good = {"sender": f"{uuid.uuid4().hex[:10]}@gmail.example", "login": "alice@runbox.com"}
    args = {"database": "submission", "entries": [good, {"sender": "not an address", "login": "alice@runbox.com"}]}
    message = _module_failure(fleet, module, args)
    assert "entries[1]" in message and "'not an address'" in message, message
    checked = fleet.db.ansible(module, json.dumps({"database": "submission", "entries": [good]}), check=True)
    assert checked["changed"] and checked["added"] == 1, checked
    assert _db_rows(fleet, "SELECT count(*) FROM validated_senders") == before, "check mode or a bad entry wrote"


def test_the_schema_module_in_check_mode_leaves_a_new_database_empty(whole_fleet):
    """store_schema --check on a database without the schema reports every
    migration and writes nothing, not even its schema_version table."""
    fleet, name = whole_fleet, f"check_{uuid.uuid4().hex[:12]}"
    fleet.db.check_output("runuser -u postgres -- createdb %s", name)
    try:
        checked = fleet.db.ansible("mailops.submission.store_schema", json.dumps({"database": name}), check=True)
        assert checked["changed"] and checked["applied"][0] == 1 and 100 in checked["applied"], checked
        tables = fleet.db.check_output(
            "psql -U postgres -At -d %s -c %s", name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        assert tables == "0", f"check mode left {tables} tables"
    finally:
        fleet.db.run("runuser -u postgres -- dropdb --if-exists %s", name)


def test_the_accounts_module_writes_nothing_for_a_bad_hash_nor_in_check_mode(whole_fleet):
    fleet = whole_fleet
    module = "mailops.submission.fleet_accounts"
    before = _db_rows(fleet, "SELECT login, password_hash FROM accounts ORDER BY 1")
    strong = _db_rows(fleet, "SELECT password_hash FROM accounts WHERE login = 'alice@runbox.com'")
    new = {"address": "newcomer@runbox.com", "password_hash": strong}
    weak = {"address": "weak@runbox.com", "password_hash": "$1$salt$0123456789abcdefghijkl"}
    message = _module_failure(fleet, module, {"database": "submission", "accounts": [new, weak]})
    assert "weak@runbox.com" in message and "MD5-crypt" in message and "$1$salt" not in message, message
    checked = fleet.db.ansible(module, json.dumps({"database": "submission", "accounts": [new]}), check=True)
    assert checked["changed"] and checked["added"] == ["newcomer@runbox.com"], checked
    after = _db_rows(fleet, "SELECT login, password_hash FROM accounts ORDER BY 1")
    assert after == before, "check mode or a bad entry wrote to the database"


# TLS connections to the fleet's counter store from an MTA, as root: without a
# client certificate (no session may come of it), then with the MTA's own
# (the milter's) without logging in, and logging in as the milter with a wrong
# password; prints what each got.
_COUNTER_STRANGER = r"""
import json, socket, ssl, sys
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
answers = []
for client, command in ((False, b"PING\r\n"), (True, b"PING\r\n"), (True, b"AUTH milter not-the-password-at-all\r\n")):
    context = ssl.create_default_context(cafile=ca)
    if client:
        context.load_cert_chain(cert, key)
    try:
        with context.wrap_socket(socket.create_connection((host, port), 5), server_hostname=host) as tls:
            tls.sendall(command)
            answers.append(tls.recv(200).decode() or "closed")
    except (OSError, ssl.SSLError) as exc:
        answers.append(f"refused: {exc}")
print(json.dumps(answers))
"""
COUNTER_STRANGER_B64 = base64.b64encode(_COUNTER_STRANGER.encode()).decode()


def _limits_command(host, action, login):
    result = host.run("submission-login-limits %s %s", action, login)
    assert result.rc == 0, f"submission-login-limits {action} {login}: {result.stderr}"
    return json.loads(result.stdout)


def test_a_login_over_its_limit_on_one_mta_is_over_it_on_every_mta(whole_fleet):
    """The MTAs' milters count in the database host's Redis: the rate-limited
    login's messages, sent on both MTAs in turn, add up to one limit; another
    login on the same client address sends on."""
    fleet, deployment = whole_fleet, whole_fleet.deployment
    account = deployment.rate_limited_account
    assert account is not None, "the fleet scenario names a rate-limited verification login"
    variables = fleet.host.ansible.get_variables()
    allowed = variables["submission_ratelimit_logins"][account.address]["messages_per_hour"]
    assert 1 < allowed <= 20, f"{account.address}'s limit {allowed} is not one a test can reach on two MTAs"
    assert _limits_command(fleet.host, "clear", account.address)["login"] == account.address.lower()
    probes = [fleet.probe(), *fleet.other_probes()]
    assert len(probes) >= 2, "a fleet of one MTA cannot show a shared count"
    endpoint = deployment.endpoints[0]
    source = Probe.unseen_source(endpoint)

    def send(probe, who):
        mail = message(who.address, deployment.recipient, uuid.uuid4().hex)
        return probe.one(authenticated(endpoint, who, deployment.recipient, data=mail, source=source))

    for n in range(allowed):
        answer = send(probes[n % len(probes)], account)
        assert answer["data"][0] == 250, f"message {n + 1} of {allowed} allowed was refused: {answer}"
    # The next one, on the MTA that has sent the fewer of them, is over the fleet's count.
    fewer = probes[allowed % len(probes)]
    code, text = send(fewer, account)["data"]
    assert code == 450 and f"limit of {allowed} messages an hour" in text, (code, text)
    other = deployment.accounts[0]
    assert send(fewer, other)["data"][0] == 250, f"{other.login} was held by {account.login}'s limit"
    # The operator sees the one count from any MTA.
    shown = _limits_command(fleet.others[0], "show", account.address)
    assert allowed - 0.5 <= shown["counted"]["messages_per_hour"] <= allowed, shown


def test_the_counter_store_takes_no_client_without_a_certificate_nor_one_not_logged_in(fleet):
    settings = fleet_database_settings(fleet.settings)
    variables = fleet.host.ansible.get_variables()
    files = [
        variables.get(f"submission_common_limits_{name}_file", f"/etc/from-check/counter-store.{suffix}")
        for name, suffix in (("cert", "crt"), ("key", "key"))
    ]
    result = fleet.host.run(
        'python3 -c "$(echo %s | base64 -d)" %s %s %s %s %s',
        *(COUNTER_STRANGER_B64, settings["host"], str(settings["counter_port"]), settings["ca_file"], *files),
    )
    assert result.rc == 0, result.stderr
    stranger, ping, auth = json.loads(result.stdout)
    assert stranger.startswith("refused") or stranger == "closed", f"a client without a certificate got: {stranger!r}"
    assert ping.startswith("-NOAUTH"), f"a connection that has not logged in got: {ping!r}"
    assert auth.startswith("-WRONGPASS"), f"a wrong password got: {auth!r}"
    # No port without TLS: Redis's default one is closed.
    plain = fleet.host.run("python3 -c %s", f"import socket; socket.create_connection(({settings['host']!r}, 6379), 5)")
    assert plain.rc != 0 and "refused" in plain.stderr.lower(), plain
