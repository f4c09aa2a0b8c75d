"""Fixtures shared by the testinfra suite.

The suite runs unchanged under molecule and against a real inventory:
    pytest --hosts='ansible://submission' --ansible-inventory=inventory/production/hosts.yml tests/
Everything it needs to know about a deployment comes from the inventory's
variables (see inventory/production/README.md): the domain, the listeners and
the verification accounts. SMTP sessions run on the host under test itself,
with tests/smtp_probe.py and the host's Python, so no port has to be reachable
from the machine that runs pytest.
"""

import base64
import ipaddress
import json
import pathlib
import random
from dataclasses import dataclass

import pytest
import testinfra
from ansible_collections.mailops.submission.plugins.module_utils.listeners import listener_hostname

PROBE_SOURCE = (pathlib.Path(__file__).parent / "smtp_probe.py").read_text()
PROBE_B64 = base64.b64encode(PROBE_SOURCE.encode()).decode()
LOAD_B64 = base64.b64encode((pathlib.Path(__file__).parent / "smtp_load.py").read_bytes()).decode()


@dataclass(frozen=True)
class Endpoint:
    """One (service name, port) pair that Postfix serves."""

    listener: str
    hostname: str
    address: str
    port: int
    tls: str
    pregreet: bool = False

    @property
    def label(self):
        return f"{self.hostname}:{self.port}"


@dataclass(frozen=True)
class Account:
    login: str
    address: str
    password: str


class Deployment:
    """What the inventory says the host should serve."""

    def __init__(self, variables):
        missing = [
            name
            for name in ("submission_domain", "submission_mta_listeners", "submission_verify_accounts")
            if name not in variables
        ]
        if missing:
            raise pytest.UsageError(
                "the inventory lacks " + ", ".join(missing) + " (see inventory/production/README.md)"
            )
        self.domain = variables["submission_domain"]
        listeners = variables["submission_mta_listeners"]
        self.endpoints = self._endpoints(listeners, lambda lst: lst["ports"], lambda lst: lst.get("tls", "starttls"))
        # Ports with TLS from the first byte (RFC 8314), kept apart: every
        # STARTTLS test runs on self.endpoints.
        self.implicit_endpoints = self._endpoints(
            listeners, lambda lst: lst.get("implicit_tls_ports", []), lambda _lst: "implicit"
        )
        self.tls_names = sorted({e.hostname for e in self.endpoints + self.implicit_endpoints})
        # Both default to the roles' defaults when the inventory does not set them.
        self.key_types = variables.get("submission_mta_tls_key_types", ["ecdsa", "rsa"])
        self.renew_days = int(variables.get("submission_tls_renew_days", 30))
        self.accounts = [Account(**account) for account in variables["submission_verify_accounts"]]
        self.sink_maildir = variables.get("submission_verify_sink_maildir")
        self.recipient = variables.get("submission_verify_recipient", "postmaster@example.net")

    def _endpoints(self, listeners, ports_of, tls_of):
        return [
            Endpoint(
                listener=listener["name"],
                hostname=listener_hostname(listener, self.domain),
                address=listener["address"],
                port=int(port),
                tls=tls_of(listener),
                pregreet=bool(listener.get("pregreet", False)) and tls_of(listener) != "implicit",
            )
            for listener in listeners
            for port in ports_of(listener)
        ]

    def auth_rate_scope(self, endpoint):
        """The endpoints whose AUTH commands count together with this one's: one
        SMTP server serves them (all the ports of a pregreet listener, behind
        postscreen; otherwise the port alone)."""
        if not endpoint.pregreet:
            return [endpoint]
        return [e for e in self.endpoints if e.listener == endpoint.listener]

    def first_endpoint_of_each_listener(self):
        seen = {}
        for endpoint in self.endpoints:
            seen.setdefault(endpoint.listener, endpoint)
        return list(seen.values())

    def account(self, domain=None):
        for account in self.accounts:
            if domain is None or account.address.endswith("@" + domain):
                return account
        raise pytest.UsageError(f"submission_verify_accounts has no account at {domain}")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist's --dist loadscope, the scope is the host: the hosts are
    verified side by side, each host's tests one after another in file order,
    so that no test meets another's traffic, restart or rate limit on its host."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 (only with xdist)

    hosts = config.option.hosts.split(",") if config.option.hosts else [None]
    host_ids = [
        h.backend.get_pytest_id()
        for h in testinfra.get_hosts(
            hosts,
            connection=config.option.connection,
            ansible_inventory=config.option.ansible_inventory,
            force_ansible=config.option.force_ansible,
        )
    ]
    # Longest first: a host named like another plus a suffix is matched whole.
    host_ids.sort(key=len, reverse=True)

    class OneWorkerPerHost(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            # testinfra's host id is the first parameter: test[ansible://host] or test[ansible://host-param].
            params = nodeid[nodeid.find("[") + 1 : -1] if nodeid.endswith("]") else ""
            return next((h for h in host_ids if params == h or params.startswith(h + "-")), nodeid)

    return OneWorkerPerHost(config, log)


@pytest.fixture(scope="module")
def deployment(host):
    return Deployment(host.ansible.get_variables())


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
        return str(ipaddress.IPv4Address(0x7F800000 + random.randrange(1, 0x7FFFFE)))  # noqa: S311 (an address, not a secret)


@pytest.fixture(scope="module")
def sink(deployment):
    """The test sink's Maildir, for tests that send many messages or strange ones."""
    if not deployment.sink_maildir:
        pytest.skip("submission_verify_sink_maildir is not set: this deployment relays to the Internet")
    return deployment.sink_maildir


def drain_queue(host, seconds=120):
    """Wait until Postfix's queue is empty (every accepted message delivered); False if it is not by then."""
    return (
        host.run(
            "for i in $(seq %s); do postqueue -p | grep -q '^[0-9A-F]' || exit 0; sleep 1; done; exit 1", str(seconds)
        ).rc
        == 0
    )


@pytest.fixture(scope="module")
def probe(host):
    return Probe(host)


def session(endpoint, **fields):
    """A probe case for this endpoint: STARTTLS unless told otherwise."""
    case = {"host": endpoint.hostname, "port": endpoint.port, "starttls": True}
    case.update(fields)
    return case
