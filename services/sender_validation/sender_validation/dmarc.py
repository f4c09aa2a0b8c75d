"""What an external address's DMARC policy means for mail sent with it as its From.

Mail this service relays with a validated external address as its From is
signed with the provider's domain, not the address's: it is not aligned, so
receivers apply the address's domain's DMARC policy to it. ``lookup`` reads
that policy (RFC 7489 6.6.3, walking up to the parent domains as DMARCbis does,
without a public suffix list: at most to the last two labels), through the
host's resolver (dnspython, Debian's python3-dnspython), within a deadline.

The record rule is ``dns_records.parse_dmarc`` in the collection's library,
the one the deployment's own records are checked with.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from ansible_collections.mailops.submission.plugins.module_utils.dns_lookup import LookupFailed, Resolver
from ansible_collections.mailops.submission.plugins.module_utils.dns_records import DmarcError, parse_dmarc

log = logging.getLogger(__name__)
# reject and quarantine: receivers that honour the policy refuse or junk the mail.
STRICT = ("reject", "quarantine")
# DMARCbis: at most this many names are asked, from the domain up.
MAX_NAMES = 8
MAX_NAME_OCTETS = 253
# A domain's policy is kept this long (seconds), for this many domains: a user
# adding addresses at one domain, or many users at a common one, ask DNS once.
CACHE_SECONDS, CACHE_SIZE = 300, 4096
_cache, _cache_lock = {}, threading.Lock()


@dataclasses.dataclass(frozen=True)
class Policy:
    """kind: reject, quarantine, none, absent (no record), unknown (no answer in time) or
    unchecked (the lookup is turned off)."""

    domain: str
    kind: str
    # The domain whose record applies (the address's, or a parent's).
    source: str = ""

    @property
    def warning(self):
        """What the user should know before using the address, or '' when nothing."""
        if self.kind == "reject":
            return (
                f"{self.domain} asks receivers to refuse mail it did not send itself (DMARC p=reject): mail sent "
                "through this service with this address as its From will be refused by many receivers."
            )
        if self.kind == "quarantine":
            return (
                f"{self.domain} asks receivers to treat mail it did not send itself as spam (DMARC p=quarantine): "
                "mail sent through this service with this address as its From will often land in spam folders."
            )
        if self.kind == "unknown":
            return (
                f"The DMARC policy of {self.domain} could not be checked now; if it asks receivers to refuse mail it "
                "did not send itself, mail sent through this service with this address as its From will be refused."
            )
        return ""


@dataclasses.dataclass(frozen=True)
class DmarcSettings:
    # Whether the policy is looked up at all.
    check: bool = True
    timeout: float = 2.0
    # Refuse addresses whose domain publishes reject or quarantine.
    refuse: bool = False
    # Nameservers to ask instead of the host's resolver (tests), and their port.
    nameservers: tuple = ()
    port: int = 53


def lookup(domain, settings):
    """The Policy for an address at domain; unknown when DNS does not answer within settings.timeout."""
    if not settings.check:
        return Policy(domain, "unchecked")
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get((domain, settings))
        if cached and cached[0] > now:
            return cached[1]
    try:
        policy = _discover(domain, settings)
    except Exception:  # fail open with a word: the address is added, the page says it was not checked
        log.exception("DMARC lookup for %s failed", domain)
        policy = Policy(domain, "unknown")
    if policy.kind != "unknown":
        with _cache_lock:
            if len(_cache) >= CACHE_SIZE:
                _cache.clear()
            _cache[(domain, settings)] = (now + CACHE_SECONDS, policy)
    return policy


def _discover(domain, settings):
    deadline = time.monotonic() + settings.timeout
    labels = domain.split(".")
    names = [".".join(labels[start:]) for start in range(max(len(labels) - 1, 1))]
    names = [name for name in names if len(f"_dmarc.{name}") <= MAX_NAME_OCTETS][:MAX_NAMES]
    for name in names:
        left = deadline - time.monotonic()
        if left <= 0:
            return Policy(domain, "unknown")
        try:
            texts = Resolver(left, list(settings.nameservers) or None, settings.port).values(f"_dmarc.{name}", "TXT")
        except LookupFailed as exc:
            log.info("no DMARC answer for %s: %s", name, exc)
            return Policy(domain, "unknown")
        records = [text for text in texts if text.split(";")[0].replace(" ", "") == "v=DMARC1"]
        if len(records) > 1:
            return Policy(domain, "absent", name)  # RFC 7489 6.6.3: several records are none
        if not records:
            continue
        try:
            tags = parse_dmarc(records[0])
        except DmarcError:
            return Policy(domain, "absent", name)
        # A parent's record speaks for its subdomains by sp=, else p=.
        kind = (tags.get("sp") if name != domain and tags.get("sp") else tags["p"]).lower()
        return Policy(domain, kind if kind in STRICT else "none", name)
    return Policy(domain, "absent")
