"""SMTP sessions played on the host under test (tests/smtp_probe.py, tests/smtp_load.py),
so that no port has to be reachable from the machine that runs pytest."""

import base64
import ipaddress
import json
import pathlib

from smtp_load import unseen_loopback_address

PROBE_SOURCE = (pathlib.Path(__file__).parent / "smtp_probe.py").read_text()
PROBE_B64 = base64.b64encode(PROBE_SOURCE.encode()).decode()
LOAD_B64 = base64.b64encode((pathlib.Path(__file__).parent / "smtp_load.py").read_bytes()).decode()


class Probe:
    """Plays SMTP sessions on the host under test and returns their results."""

    def __init__(self, host):
        self.host = host

    def run(self, cases, workers=8):
        payload = base64.b64encode(json.dumps(cases).encode()).decode()
        cmd = self.host.run('python3 -c "$(echo %s | base64 -d)" %s %s', PROBE_B64, payload, str(workers))
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
