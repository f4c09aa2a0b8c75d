"""What the inventory says a host should serve: its endpoints and verification accounts."""

from dataclasses import dataclass

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.listeners import listener_hostname


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
            for name in ("submission_domain", "submission_common_listeners", "submission_verify_accounts")
            if name not in variables
        ]
        if missing:
            raise pytest.UsageError(
                "the inventory lacks " + ", ".join(missing) + " (see inventory/production/README.md)"
            )
        self.domain = variables["submission_domain"]
        listeners = variables["submission_common_listeners"]
        self.endpoints = self._endpoints(listeners, lambda lst: lst["ports"], lambda lst: lst.get("tls", "starttls"))
        # Ports with TLS from the first byte (RFC 8314), kept apart: every
        # STARTTLS test runs on self.endpoints.
        self.implicit_endpoints = self._endpoints(
            listeners, lambda lst: lst.get("implicit_tls_ports", []), lambda _lst: "implicit"
        )
        self.tls_names = sorted({e.hostname for e in self.endpoints + self.implicit_endpoints})
        # These default to the roles' defaults when the inventory does not set them.
        self.key_types = variables.get("submission_mta_tls_key_types", ["ecdsa", "rsa"])
        self.renew_days = int(variables.get("submission_tls_renew_days", 30))
        self.greet_wait = float(variables.get("submission_mta_greet_wait", 3))
        self.accounts = [Account(**account) for account in variables["submission_verify_accounts"]]
        limited = variables.get("submission_verify_rate_limited_account")
        # Only the per-login limit tests use it: they use up its limits.
        self.rate_limited_account = Account(**limited) if limited else None
        # Every login whose password the tests use: HostSecrets holds them all.
        self.verification_accounts = self.accounts + ([self.rate_limited_account] if limited else [])
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

    def first_endpoint_of_each_listener(self, implicit=False):
        """The first STARTTLS (or TLS-only) port of each listener; with implicit,
        also the first implicit-TLS port of each listener that has them."""
        seen = {}
        for endpoint in self.endpoints + (self.implicit_endpoints if implicit else []):
            seen.setdefault((endpoint.listener, endpoint.tls == "implicit"), endpoint)
        return list(seen.values())

    def account(self, domain=None):
        for account in self.accounts:
            if domain is None or account.address.endswith("@" + domain):
                return account
        raise pytest.UsageError(f"submission_verify_accounts has no account at {domain}")


def postfix_setting(host, parameter, variable, default):
    """(the number Postfix has for parameter, the number the inventory's variable
    sets, or the role's default when the inventory leaves it out)."""
    actual = int(host.check_output("postconf -h %s", parameter))
    return actual, int(host.ansible.get_variables().get(variable, default))
