# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DKIM rules, once: which headers a signature covers, which domain signs
a message, the selectors and the names their records live under.

Pure Python, no Ansible import: the header-From milter (which signs) and the
collection's modules and filters (which manage keys and print the records to
publish) import it as
``ansible_collections.mailops.submission.plugins.module_utils.dkim_rules``.

Selectors. Each domain has two slots an algorithm, so that a new key is
published under the slot the signing key does not use, and signing moves to
it once its record is seen (RFC 6376 3.1; M3AAWG's rotation practice):
``rsa1``/``rsa2`` (RSA-SHA256, 2048 bits or more) and ``ed1``/``ed2``
(Ed25519-SHA256, RFC 8463). One record name holds one key, so a message signed
with both algorithms names two selectors.

Hosted domains publish once: each slot of a hosted domain is a CNAME into the
provider's zone (``rsa1._domainkey.hosted.example`` ->
``rsa1.hosted.example._domainkey.runbox.com``), where the provider publishes
and rotates the key, as Microsoft 365 does for its customers' domains. The
target's selector part holds the hosted domain's name, so that no two
domains' targets meet, and none meets the provider's own one-label selectors.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from ansible_collections.mailops.submission.plugins.module_utils.dns_name import MAX_NAME_OCTETS

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
SLOTS = {"rsa-sha256": ("rsa1", "rsa2"), "ed25519-sha256": ("ed1", "ed2")}
KEY_TYPES = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}
MIN_RSA_BITS = 2048

# What a signature covers (RFC 6376 5.4.1's list, less what relays change):
# each copy the message has; the OVERSIGNED names once more, so that a copy
# added on the way (a second From, a Cc) breaks the signature (8.15).
SIGNED_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
OVERSIGNED = ("from", "sender", "reply-to", "to", "cc", "subject", "date")
# A message keeps at most this many copies of one signed header in the
# milter's memory; past it, the signature covers the last copies and adds
# no oversigned one (a verifier reads the copies bottom-up).
MAX_SIGNED_COPIES = 50
# A TXT record's strings are at most 255 octets each (RFC 1035 3.3.14).
TXT_STRING_OCTETS = 255


class DkimRuleError(ValueError):
    """A selector, algorithm or name the rules refuse; the message names the value."""


def selector_algorithm(selector):
    """The algorithm a slot's selector signs with."""
    for algorithm, slots in SLOTS.items():
        if selector in slots:
            return algorithm
    raise DkimRuleError(f"{selector!r} is not a selector slot (one of {', '.join(sum(SLOTS.values(), ()))})")


def record_name(domain, selector):
    """Where a selector's key is found: ``<selector>._domainkey.<domain>``."""
    return f"{selector}._domainkey.{domain}"


def key_name(domain, selector, provider_domain):
    """Where the provider publishes a domain's key: the record itself for the
    provider's own domain, the CNAME's target in the provider's zone for a
    hosted domain."""
    if domain == provider_domain:
        return record_name(domain, selector)
    target = record_name(provider_domain, f"{selector}.{domain}")
    if len(target) > MAX_NAME_OCTETS:
        raise DkimRuleError(
            f"{domain}: its key's name {target} is {len(target)} octets long, past DNS's {MAX_NAME_OCTETS}"
        )
    return target


def key_record(algorithm, public_key):
    """The TXT record's text: public_key is the base64 of the DER
    SubjectPublicKeyInfo (RSA) or of the 32 raw octets (Ed25519, RFC 8463)."""
    if algorithm not in KEY_TYPES:
        raise DkimRuleError(f"{algorithm!r} is not a DKIM algorithm this service signs with")
    return f"v=DKIM1; k={KEY_TYPES[algorithm]}; p={public_key}"


def txt_strings(text):
    """A record's text as the strings of one TXT record (255 octets each), as zone files quote them."""
    return [text[start : start + TXT_STRING_OCTETS] for start in range(0, len(text), TXT_STRING_OCTETS)] or [""]


def signing_domain(from_domain, key_domains, provider_domain):
    """d= for a message whose From header's domain is from_domain: that domain
    or its nearest parent that has keys (a subdomain of a hosted domain is
    aligned with it under relaxed DMARC), else the provider's domain (a
    validated address elsewhere: signed, not aligned)."""
    labels = (from_domain or "").lower().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        candidate = ".".join(labels[start:])
        if candidate in key_domains:
            return candidate
    return provider_domain


# The life of a key (the dkim_keys module keeps it; the milter signs with the active ones):
# pending (published, not yet seen in DNS) -> active (signs) -> retiring (published, no longer
# signs: mail signed with it may still be in flight or in a queue) -> removed.
STATES = ("pending", "active", "retiring")
MIN_RETIRE_DAYS = 7


@dataclass
class KeyEntry:
    """One key as the manifest lists it (public data only)."""

    domain: str
    algorithm: str
    selector: str
    state: str
    created: str
    public: str = ""
    file: str = ""
    activated: str = ""
    retire_on: str = ""

    def label(self):
        return f"{self.domain} {self.selector} ({self.algorithm}, created {self.created})"

    def line(self):
        """The diff's line for this key: never key material."""
        dates = f", retired on {self.retire_on}" if self.retire_on else ""
        return f"{self.label()}: {self.state}{dates}\n"


@dataclass
class KeyPlan:
    entries: list
    created: list = field(default_factory=list)
    activated: list = field(default_factory=list)
    retiring: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    # Rotations due that wait for the other slot's key to retire.
    waiting: list = field(default_factory=list)

    @property
    def changed(self):
        return bool(self.created or self.activated or self.retiring or self.removed)


def _day(text):
    return datetime.date.fromisoformat(text)


@dataclass(frozen=True)
class KeyPolicy:
    """When keys change: a key is rotation_days old at rotation; a key it replaces
    keeps its record retire_days; force activates pending keys without their
    record seen; emergency replaces every key at once."""

    today: datetime.date
    rotation_days: int = 180
    retire_days: int = MIN_RETIRE_DAYS
    force: bool = False
    emergency: bool = False


def plan_keys(entries, wanted, policy, published):
    """The manifest's next entries and what changes, for each (domain, algorithm) of ``wanted``.

    entries: the KeyEntry list the manifest holds; policy: a KeyPolicy; published(entry) -> bool
    says whether the entry's record is seen in DNS with its key. Pure: nothing is generated,
    written or looked up here; a new entry has no public key or file yet (the module fills them).
    - A pair with no key gets a pending key in its first slot (active at once with force).
    - A pending key whose record is seen becomes active (with force, also unseen where no key of its
      pair is active yet: a first install); the active key before it is retiring until
      today + retire_days, then removed.
    - When the active key has signed for rotation_days and no key is pending, a pending key is made
      in the other slot, once that slot is free (a key still retiring there makes the rotation wait).
    - emergency: every key of every pair is removed and a new key made in the other slot, active
      at once.
    - A pair no longer wanted (a domain no longer hosted, an algorithm dropped): its keys go.
    """
    planner = _Planner(policy, published)
    for entry in entries:
        if (entry.domain, entry.algorithm) not in wanted:
            planner.plan.removed.append(entry)
    for domain, algorithm in wanted:
        pair = [entry for entry in entries if (entry.domain, entry.algorithm) == (domain, algorithm)]
        planner.plan.entries += planner.pair(pair, domain, algorithm)
    return planner.plan


class _Planner:
    def __init__(self, policy, published):
        self.policy = policy
        self.published = published
        self.day = policy.today.isoformat()
        self.plan = KeyPlan([])

    def new(self, domain, algorithm, selector, active):
        entry = KeyEntry(domain, algorithm, selector, "active" if active else "pending", self.day)
        self.plan.created.append(entry)
        if active:
            entry.activated = self.day
            self.plan.activated.append(entry)
        return entry

    def pair(self, pair, domain, algorithm):
        slots = SLOTS[algorithm]
        if self.policy.emergency:
            used = {entry.selector for entry in pair if entry.state == "active"}
            self.plan.removed += pair
            return [self.new(domain, algorithm, slots[1] if slots[0] in used else slots[0], active=True)]
        kept = []
        for entry in pair:
            if entry.state == "retiring" and _day(entry.retire_on) <= self.policy.today:
                self.plan.removed.append(entry)
            else:
                kept.append(entry)
        if not kept:
            return [self.new(domain, algorithm, slots[0], active=self.policy.force)]
        self.rotate(kept, domain, algorithm)
        self.activate(kept)
        return kept

    def activate(self, kept):
        new = {id(entry) for entry in self.plan.created}
        for entry in [each for each in kept if each.state == "pending"]:
            # A key made in this run has no record yet. Force activates only where
            # nothing signs (a first install): a rotation always waits for its record.
            forced = self.policy.force and not any(each.state == "active" for each in kept)
            if forced or (id(entry) not in new and self.published(entry)):
                retire_on = self.policy.today + datetime.timedelta(days=self.policy.retire_days)
                for older in kept:
                    if older.state == "active":
                        older.state, older.retire_on = "retiring", retire_on.isoformat()
                        self.plan.retiring.append(older)
                entry.state, entry.activated = "active", self.day
                self.plan.activated.append(entry)

    def rotate(self, kept, domain, algorithm):
        active = [entry for entry in kept if entry.state == "active"]
        if not active or any(entry.state == "pending" for entry in kept):
            return
        # A key's age counts from the day it started signing.
        since = _day(active[-1].activated or active[-1].created)
        if since + datetime.timedelta(days=self.policy.rotation_days) > self.policy.today:
            return
        free = [slot for slot in SLOTS[algorithm] if slot not in {entry.selector for entry in kept}]
        if free:
            kept.append(self.new(domain, algorithm, free[0], active=False))
        else:
            self.plan.waiting.append(active[-1])
