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
