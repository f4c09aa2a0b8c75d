# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a DNS name is: the one rule for the collection's mail domains, host
names and certificate names.

Pure Python, no Ansible import: the validation service and the header-From
milter import it (through sender_address and fleet_schema) on hosts without
Ansible. Modules and services import it as
``ansible_collections.mailops.submission.plugins.module_utils.dns_name``.

A name is written the way the collection writes it everywhere (lookup keys,
file names, certificates, connection strings): lower case, with an
internationalised label as its IDNA A-label. IDNA 2008 with UTS 46 mapping,
non-transitional (the ``idna`` package, Debian's python3-idna): ``faß.de`` is
``xn--fa-hia.de``, not IDNA 2003's ``fass.de``, another registrant's domain.

Refused: an empty label or a trailing dot; a label over 63 octets, with a
character outside letters, digits and '-', or with '-' at either end; a name
over 253 octets (the 255 of the wire form, less its length octets); a last
label of digits only (RFC 3696, section 2: no top-level domain is all-numeric,
and a resolver reads ``10.1.2.3`` or ``1234`` as an IPv4 address); a single
label, unless the caller takes host names that may be one (``single_label``).
"""

from __future__ import annotations

import re

MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 253

# The rule as regular expressions over canonical text, for callers that check a
# whole address or file in one pass (sender_address, the fleet database's
# CHECK); dns_name says why a value fails, and takes U-labels and upper case.
LABEL_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# The last label has a character other than a digit (the lookahead cannot
# leave the label: '.' is not in its class).
LAST_LABEL_PATTERN = rf"(?=[a-z0-9-]*[a-z-]){LABEL_PATTERN}"
NAME_PATTERN = rf"(?:{LABEL_PATTERN}\.)+{LAST_LABEL_PATTERN}"

_LABEL_RE = re.compile(LABEL_PATTERN)
_DIGITS_RE = re.compile(r"[0-9]+")


class RefusedValue(ValueError):
    """A value one of the collection's rules refuses: the message names it, reason says why."""

    def __init__(self, value, reason):
        super().__init__(f"{value!r}: {reason}")
        self.value = value
        self.reason = reason


class DnsNameError(RefusedValue):
    """Not a DNS name; reason reads after the name ("has a trailing dot")."""


def dns_name(value, single_label=False):
    """The canonical form of the DNS name value (lower case, A-labels), or DnsNameError.

    single_label: a name of one label is a name too (a host name such as
    ``db1``, which the resolver completes); otherwise two labels at least."""
    if not isinstance(value, str):
        raise DnsNameError(value, "is not a string")
    if not value:
        raise DnsNameError(value, "is empty")
    if value.endswith("."):
        raise DnsNameError(value, "has a trailing dot")
    labels = [_ascii_label(value, label) for label in value.split(".")]
    if len(labels) < 2 and not single_label:
        raise DnsNameError(value, "needs at least two labels")
    if _DIGITS_RE.fullmatch(labels[-1]):
        raise DnsNameError(value, "ends with a label of digits only (an address, not a name)")
    name = ".".join(labels)
    if len(name) > MAX_NAME_OCTETS:
        raise DnsNameError(value, f"is longer than {MAX_NAME_OCTETS} octets")
    return name


def is_dns_name(value, single_label=False):
    """True when value is a DNS name already in its canonical form (lower case, A-labels)."""
    try:
        return dns_name(value, single_label=single_label) == value
    except DnsNameError:
        return False


def _ascii_label(value, label):
    if not label:
        raise DnsNameError(value, "has an empty label")
    ascii_label = label.lower() if label.isascii() else _idn_label_to_ascii(value, label)
    if len(ascii_label) > MAX_LABEL_OCTETS:
        raise DnsNameError(value, f"has the label {label!r}, longer than {MAX_LABEL_OCTETS} octets")
    if not _LABEL_RE.fullmatch(ascii_label):
        raise DnsNameError(
            value, f"has the label {label!r}, with a character outside letters, digits and '-', or '-' at an end"
        )
    return ascii_label


def _idn_label_to_ascii(value, label):
    """The A-label of a U-label: IDNA 2008, UTS 46 mapping, non-transitional."""
    try:
        import idna  # noqa: PLC0415 (only IDN labels need it; Ansible's targets may lack it)
    except ImportError:
        raise DnsNameError(value, "is internationalised, which needs the idna package (python3-idna)") from None
    try:
        return idna.encode(label, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise DnsNameError(value, f"has the label {label!r}, which is not a valid IDN label ({exc})") from None
