# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse, validate and normalise sender-allowlist keys and SASL logins.

Pure Python, no Ansible import, so that it is unit-tested without a target host.

A sender key is ``local@domain`` (that address; Postfix also applies it to
``local+tag@domain``) or ``@domain`` (every address at that domain). A login is
the canonical ``local@domain`` that Dovecot reports and Postfix logs as
``sasl_username``. Both are lower-cased, with the domain in its IDNA A-label
form, because Postfix folds lookup keys to lower case and compares ASCII.

Refused, because Postfix or postmap would read them as something else, or
because no mail client sends them: whitespace, commas, control characters,
``%`` and ``!`` (old relay routing), ``:`` and source routes, quoted local parts,
``=?`` (an RFC 2047 encoded word, which a mail library would decode into another
address), a leading ``#`` (a comment to postmap), local parts over 64 octets,
and a domain that is not a DNS name of two labels or more by the collection's
one rule (``dns_name``: no empty label or trailing dot, at most 253 octets, the
last label not all digits; an internationalised domain becomes its IDNA 2008
A-labels, ``faß.de`` is ``xn--fa-hia.de``).

``mailbox`` is the rule for "the same mailbox" that the validation limits count
on: the canonical address without its ``+tag``, and without dots in the local
part at the domains that ignore them (``DOT_FOLDING_DOMAINS``).
"""

from __future__ import annotations

import re

from ansible_collections.mailops.submission.plugins.module_utils.dns_name import (
    LABEL_PATTERN,
    LAST_LABEL_PATTERN,
    MAX_LABEL_OCTETS,
    MAX_NAME_OCTETS,
    NAME_PATTERN,
    DnsNameError,
    RefusedValue,
    dns_name,
)

MAX_LOCAL_OCTETS = 64

# RFC 5322 atext without the characters refused above ('%', '!').
_ATEXT = r"[a-z0-9#$&'*+/=?^_`{|}~-]"
_LOCAL = rf"(?!#){_ATEXT}+(?:\.{_ATEXT}+)*"
# Logins pass through Dovecot's auth_username_chars, a narrower set.
_LOGIN_LOCAL = r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*"

SENDER_RE = re.compile(rf"(?:{_LOCAL})?@{NAME_PATTERN}")
LOGIN_RE = re.compile(rf"{_LOGIN_LOCAL}@{NAME_PATTERN}")

# The same rules for a whole lower-cased bulk file (``sender login`` lines, blank
# and '#' lines), with the length limits as lookaheads, checked in one pass of the
# regex engine. Possessive and atomic groups keep it linear and its memory flat.
# Whatever this accepts, normalize_sender/normalize_login accept unchanged; a
# file it refuses is parsed line by line (IDN domains, or an error naming the line).
_ATEXT_RUN = rf"{_ATEXT}++"
# A label followed by '.' is never the last: the possessive run of them leaves the last label.
_DOMAIN_ATOMIC = rf"(?:(?>{LABEL_PATTERN})\.)++(?>{LAST_LABEL_PATTERN})"
_BULK_SENDER = (
    rf"(?=[^@\s]{{0,{MAX_LOCAL_OCTETS}}}@\S{{1,{MAX_NAME_OCTETS}}}[ \t])"
    r"(?![^@\s]*=\?)"
    rf"(?!#)(?:{_ATEXT_RUN}(?:\.{_ATEXT_RUN})*+)?@{_DOMAIN_ATOMIC}"
)
_BULK_LOGIN = (
    rf"(?=[^@\s]{{1,{MAX_LOCAL_OCTETS}}}@\S{{1,{MAX_NAME_OCTETS}}}[ \t\n])"
    rf"[a-z0-9_+-]++(?:\.[a-z0-9_+-]++)*+@{_DOMAIN_ATOMIC}"
)
BULK_FILE_RE = re.compile(rf"(?>[ \t]*+(?:#[^\n]*+)?\n|[ \t]*+{_BULK_SENDER}[ \t]++{_BULK_LOGIN}[ \t]*+\n)*+")

# BULK_FILE_RE in less than half the time, for a file whose every address is at
# most 63 characters long: its local part, domain and labels are then within their
# limits, so that one bounded run over each address replaces the length lookaheads
# and the labels' bounded repetition. Without '=?' in the file, the two accept the
# same files of such addresses; this one refuses a longer address. A line matches
# one branch or none, so the usual one, a pair, is tried first.
_SHORT_ADDRESS = rf"(?=[!-~]{{1,{MAX_LABEL_OCTETS}}}+[ \t\n])"
_LABEL_RUN = r"[a-z0-9]++(?:-++[a-z0-9]++)*+"
# The last label: after its leading digits comes a letter or '-', so that it is not all digits.
_SHORT_DOMAIN = rf"(?:{_LABEL_RUN}\.)++(?=[0-9]*+[a-z-]){_LABEL_RUN}"
_SHORT_SENDER = rf"{_SHORT_ADDRESS}(?!#)(?:{_ATEXT_RUN}(?:\.{_ATEXT_RUN})*+)?@{_SHORT_DOMAIN}"
_SHORT_LOGIN = rf"{_SHORT_ADDRESS}[a-z0-9_+-]++(?:\.[a-z0-9_+-]++)*+@{_SHORT_DOMAIN}"
SHORT_BULK_FILE_RE = re.compile(rf"(?>[ \t]*+{_SHORT_SENDER}[ \t]++{_SHORT_LOGIN}[ \t]*+\n|[ \t]*+(?:#[^\n]*+)?\n)*+")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ENCODED_WORD = "=?"

# Domains whose mailboxes ignore dots in the local part, and the domain each
# stands for (Gmail's two names are one mailbox).
DOT_FOLDING_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
_WHITESPACE = re.compile(r"\s")


class AddressError(RefusedValue):
    """An address that cannot be a key or a login; the message says why."""


def is_canonical_bulk_file(folded):
    """Whether BULK_FILE_RE accepts a lower-cased bulk file (ending in a newline).

    SHORT_BULK_FILE_RE decides first where it can (no '=?' anywhere, which only a
    comment could hold); a file it refuses, as for an address over 63 characters,
    goes to BULK_FILE_RE.
    """
    if ENCODED_WORD not in folded and SHORT_BULK_FILE_RE.fullmatch(folded):
        return True
    return BULK_FILE_RE.fullmatch(folded) is not None


def _domain_to_ascii(value, domain):
    if not domain:
        raise AddressError(value, "empty domain")
    if domain.startswith("[") or domain.startswith("#"):
        raise AddressError(value, "address literals are not allowed")
    try:
        return dns_name(domain)
    except DnsNameError as exc:
        raise AddressError(value, f"the domain {exc.reason}") from None


def _check_common(value):
    if not isinstance(value, str):
        raise AddressError(value, "not a string")
    if not value:
        raise AddressError(value, "empty")
    if _CONTROL.search(value):
        raise AddressError(value, "control character")
    if _WHITESPACE.search(value):
        raise AddressError(value, "whitespace")
    for char, why in ((",", "comma"), ("%", "'%' (percent-hack routing)"), ("!", "'!' (bang path)")):
        if char in value:
            raise AddressError(value, why)
    if ":" in value:
        raise AddressError(value, "':' (source route or address literal)")
    if '"' in value or "\\" in value:
        raise AddressError(value, "quoted local part")
    if ENCODED_WORD in value:
        raise AddressError(value, "'=?' (an encoded word, which would be read as another address)")
    if value.count("@") != 1:
        raise AddressError(value, "needs exactly one '@'")


def _check_local(value, local, pattern):
    if len(local.encode()) > MAX_LOCAL_OCTETS:
        raise AddressError(value, f"local part is longer than {MAX_LOCAL_OCTETS} octets")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError(value, "empty dot-separated part in the local part")
    if local.startswith("#"):
        raise AddressError(value, "local part starts with '#'")
    if not re.fullmatch(pattern, local):
        bad = sorted({c for c in local if not re.fullmatch(pattern, c)})
        raise AddressError(value, f"local part has a character that is not allowed: {''.join(bad)!r}")


def normalize_sender(value):
    """Return the canonical form of a sender key, or raise AddressError."""
    return _normalize(value, SENDER_RE, rf"{_ATEXT}+(?:\.{_ATEXT}+)*", local_required=False)


def normalize_login(value):
    """Return the canonical form of a SASL login (local@domain), or raise AddressError."""
    return _normalize(value, LOGIN_RE, r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*", local_required=True)


def _normalize(value, canonical_re, local_pattern, local_required):
    # Most input is canonical ASCII already: one regex match settles it.
    if isinstance(value, str):
        folded = value.lower()
        if folded.isascii() and canonical_re.fullmatch(folded) and ENCODED_WORD not in folded and _lengths_ok(folded):
            return folded
    _check_common(value)
    local, domain = value.split("@")
    if local_required and not local:
        raise AddressError(value, "a login needs a local part")
    domain = _domain_to_ascii(value, domain)
    if local:
        local = local.lower()
        _check_local(value, local, local_pattern)
    return f"{local}@{domain}"


def _lengths_ok(address):
    local, _, domain = address.partition("@")
    return (
        len(local) <= MAX_LOCAL_OCTETS
        and len(domain) <= MAX_NAME_OCTETS
        and all(len(label) <= MAX_LABEL_OCTETS for label in domain.split("."))
    )


def mailbox(sender, delimiter="+"):
    """The mailbox a canonical sender reaches: without its +tag, and without
    the local part's dots where the domain ignores them. ``V.ictim+1@gmail.com``
    and ``victim@googlemail.com`` are one mailbox, ``victim@gmail.com``."""
    local, _, domain = sender.rpartition("@")
    if delimiter and delimiter in local:
        local = local.split(delimiter, 1)[0] or local
    if domain in DOT_FOLDING_DOMAINS:
        domain = DOT_FOLDING_DOMAINS[domain]
        local = local.replace(".", "") or local
    return f"{local}@{domain}"
