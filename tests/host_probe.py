"""SMTP sessions played on the host under test (tests/smtp_probe.py, tests/smtp_load.py),
so that no port has to be reachable from the machine that runs pytest."""

import base64
import email
import ipaddress
import json
import os
import pathlib
import re
import tempfile

from secret_refs import SECRETS_ENV, conceal
from smtp_load import unseen_loopback_address

HERE = pathlib.Path(__file__).parent


def host_program(main, *modules):
    """base64 of a program for `python3 -c`: tests/<main>.py, after tests/<module>.py
    for each module loaded under its own name, so that main imports it as usual."""
    loader = ["import sys, types"]
    for name in modules:
        source = (HERE / f"{name}.py").read_text()
        loader.append(
            f"_m = types.ModuleType({name!r}); exec(compile({source!r}, {name + '.py'!r}, 'exec'), _m.__dict__); "
            f"sys.modules[{name!r}] = _m"
        )
    program = "\n".join(loader) + "\n" + (HERE / f"{main}.py").read_text()
    return base64.b64encode(program.encode()).decode()


PROBE_B64 = host_program("smtp_probe", "secret_refs")
LOAD_B64 = base64.b64encode((HERE / "smtp_load.py").read_bytes()).decode()


# One HostSecrets a host in this pytest process.
_SECRETS_BY_HOST = {}


class HostSecrets:
    """The verification accounts' passwords in a 0600 file on the host under
    test, put there through Ansible's connection (never a command line) and
    removed when pytest ends. Programs find it through $SUBMISSION_VERIFY_SECRETS."""

    def __init__(self, host, accounts):
        self.host = host
        self.passwords = {account.login: account.password for account in accounts}
        self.path = self.put(json.dumps(self.passwords))

    @classmethod
    def of(cls, host, accounts, config):
        """One file a host for the whole run; config is pytest's, which removes it at the end."""
        key = host.backend.get_pytest_id()
        if key not in _SECRETS_BY_HOST:
            secrets = _SECRETS_BY_HOST[key] = cls(host, accounts)
            config.add_cleanup(secrets.remove)
        return _SECRETS_BY_HOST[key]

    def put(self, content):
        """A new 0600 file on the host holding content; its path."""
        path = self.host.check_output("mktemp /tmp/submission-verify.XXXXXXXXXX")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as local:
            os.chmod(local.name, 0o600)
            local.write(content)
            local.flush()
            result = self.host.ansible("copy", f"src={local.name} dest={path} mode=0600", check=False)
        assert not result.get("failed"), f"could not put a file on the host: {result.get('msg')}"
        return path

    def remove(self):
        self.host.run("rm -f %s", self.path)

    def conceal(self, value):
        return conceal(value, self.passwords)

    @property
    def env(self):
        """The shell assignment that tells a program where the passwords are."""
        return f"{SECRETS_ENV}={self.path}"


class Probe:
    """Plays SMTP sessions on the host under test and returns their results."""

    def __init__(self, host, secrets):
        self.host, self.secrets = host, secrets

    def run(self, cases, workers=8):
        payload = base64.b64encode(json.dumps(self.secrets.conceal(cases)).encode()).decode()
        cmd = self.host.run(
            self.secrets.env + ' python3 -c "$(echo %s | base64 -d)" %s %s', PROBE_B64, payload, str(workers)
        )
        assert cmd.rc == 0, f"probe failed: {cmd.stderr}"
        return json.loads(cmd.stdout)

    def one(self, case):
        return self.run([case])[0]

    @staticmethod
    def unseen_source(endpoint):
        """A client address that no earlier session has used, for sessions that
        fail on purpose and for the abuse tests.

        Dovecot delays answers to an address after failed logins, postscreen
        remembers a client that passed its greeting test for a day and anvil
        counts AUTH commands for a minute: a reused address would carry one
        case's penalty into the next, or test their memory, not their limits.
        On a loopback listener it is a random address in 127.128.0.0/9;
        elsewhere the host's own address.
        """
        if not ipaddress.ip_address(endpoint.address).is_loopback:
            return None
        return unseen_loopback_address()


QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")


def message(sender, recipient, token):
    """A small message whose Subject, Message-ID and body carry token, to find it in the sink."""
    return (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: submission test {token}\r\n"
        f"Message-ID: <{token}@probe.test>\r\n\r\nToken {token}\r\n"
    )


def queue_id(result):
    """The queue id in a probe result's answer to the final dot, or None if the message was not accepted."""
    queued = QUEUED.search((result.get("data") or [0, ""])[1])
    return queued.group(1) if queued else None


def client_log_line(host, queue_id):
    """smtpd's "QUEUEID: client=..., sasl_username=..." log line, once it is in the journal (20 s at most)."""
    return host.run(
        "for i in $(seq 40); do journalctl --no-pager -o cat --since=-15min | grep -F '%s: client=' && exit 0;"
        " sleep 0.5; done; exit 1",
        queue_id,
    ).stdout


def wait_for_sink(host, maildir, token):
    """The message holding token, as the test sink stored it (envelope in
    X-MailFrom and X-RcptTo), once it arrives within a minute; else None."""
    found = host.run(
        "for i in $(seq 120); do f=$(grep -rl %s %s/new 2>/dev/null | head -n1); "
        '[ -n "$f" ] && cat "$f" && exit 0; sleep 0.5; done; exit 1',
        token,
        maildir,
    )
    return email.message_from_string(found.stdout) if found.rc == 0 else None


def load_plan(deployment, run_id, clients):
    """A plan for tests/smtp_load.py on the deployment's first endpoint: every
    verification account sends as itself, and now and then as the next one (a
    foreign sender the server must refuse), for 20 s."""
    accounts = deployment.accounts
    endpoint = deployment.endpoints[0]
    return {
        "host": endpoint.hostname,
        "port": endpoint.port,
        "accounts": [
            {
                "login": account.login,
                "password": account.password,
                "sender": account.address,
                "foreign_sender": accounts[(n + 1) % len(accounts)].address,
            }
            for n, account in enumerate(accounts)
        ],
        "recipient": deployment.recipient,
        "clients": clients,
        "messages_per_session": 3,
        "seconds": 20,
        "run_id": run_id,
        "timeout": 30,
    }


def sink_copies(host, sink, run_id):
    """How many copies of each load token of run_id the test sink holds."""
    listed = host.run("grep -rh '^X-Load-Token: %s-' %s/new %s/cur | sort | uniq -c", run_id, sink, sink).stdout
    return {line.split()[2]: int(line.split()[0]) for line in listed.splitlines() if line.strip()}


def drain_queue(host, seconds=120):
    """Wait until Postfix's queue is empty (every accepted message delivered); False if it is not by then."""
    return (
        host.run(
            "for i in $(seq %s); do postqueue -p | grep -q '^[0-9A-F]' || exit 0; sleep 1; done; exit 1", str(seconds)
        ).rc
        == 0
    )


def session(endpoint, **fields):
    """A probe case for this endpoint: STARTTLS unless told otherwise."""
    case = {"host": endpoint.hostname, "port": endpoint.port, "starttls": True}
    case.update(fields)
    return case


def authenticated(endpoint, account, recipient, **fields):
    """A probe case: the account logs in and sends from its own address."""
    return session(
        endpoint,
        login=account.login,
        password=account.password,
        mail_from=account.address,
        rcpt_to=[recipient],
        **fields,
    )


def sender_session(endpoint, account, sender, recipient):
    """A probe case: account logs in and gives sender as MAIL FROM, for one recipient."""
    return session(endpoint, login=account.login, password=account.password, mail_from=sender, rcpt_to=[recipient])


def first_answer_to_rcpt(result):
    """[code, text] of a sender_session's first RCPT, or of its MAIL when no RCPT was answered."""
    return (result.get("rcpt") or [[result.get("mail", [0, ""])[0], str(result)]])[0]
