"""The addresses a message shows as its author, read strictly, or why they cannot be.

The author headers are From, and, when present, Sender, Resent-From and
Resent-Sender: a recipient's client may show any of them. Each must name one
mailbox, and each mailbox is judged by the same rule (check.py).

The standard library's header parser (email.headerregistry, as the default
policy uses it) reads a header as RFC 5322 has it: display names, comments,
encoded words, quoting and folding all parsed. Anything it had to guess at (a
defect) makes the header unreadable rather than read one way here and another
way by the recipient's client. Stricter than RFC 5322, because a recipient
reads what a client shows, not the grammar:

- a header longer than MAX_LENGTH characters is refused before it is parsed
  (RFC 5322's line limit; the parser's time grows with the square of some
  inputs, 40 ms at 998 characters, 8.6 s at 20 kB);
- the address must be a plain local@domain: a quoted local part
  (``"alice+ceo@victim.example"@runbox.com``) or an encoded word anywhere in it
  (``alice@=?utf-8?q?runbox.com?=``) is refused, since clients show those
  literally or not at all;
- a display name or comment that holds an address other than the mailbox
  (``"ceo@victim.example" <alice@runbox.com>``, what many clients show as the
  sender) is refused, unless the deployment allows it.
"""

from __future__ import annotations

import functools
import re
from email.headerregistry import HeaderRegistry

# The author headers, lower-case, in the order their refusals are reported;
# Sender and Resent-Sender name a single mailbox (RFC 5322 3.6.2, 3.6.6).
AUTHOR_HEADERS = ("from", "sender", "resent-from", "resent-sender")
NAMES = {"from": "From", "sender": "Sender", "resent-from": "Resent-From", "resent-sender": "Resent-Sender"}
# RFC 5322's limit for a line, applied to the unfolded header's value.
MAX_LENGTH = 998
# Resent-From and Resent-Sender headers read at most (a resent block each): with
# From, Sender and MAX_LENGTH, the reading of one message is bounded (under a
# third of a second for the slowest headers the parser knows).
MAX_RESENT = 5

_FOLD = re.compile(r"\r?\n(?=[ \t])")
# Something that reads as an address in a display name or comment.
_ADDRESS_LIKE = re.compile(r"[^\s\"<>(),;:\[\]@]+@[^\s\"<>(),;:\[\]@]+")
_REGISTRY = HeaderRegistry()


class FromError(ValueError):
    """An author header that names no single plain mailbox; the message says why, for the client."""


def header_mailbox(values, name="from", display_addresses=False):
    """The address (local@domain, the domain lower-cased) of the only such header's only mailbox.

    values: the bodies of the message's headers of that name, in order, as the MTA passed them.
    display_addresses: allow a display name or comment to hold another address.
    """
    label = NAMES.get(name, name)
    if not values:
        raise FromError(f"the message has no {label} header")
    if len(values) > 1:
        raise FromError(f"the message has {len(values)} {label} headers; one is allowed")
    return _one_mailbox(values[0], label, display_addresses)


def author_addresses(headers, display_addresses=False):
    """[(header label, address)] for each author header of a message, From first.

    headers: lower-case header name -> list of values. From must be there once;
    Sender at most once; each Resent-From or Resent-Sender (one a resent
    block) names one mailbox.
    """
    resent = len(headers.get("resent-from", [])) + len(headers.get("resent-sender", []))
    if resent > MAX_RESENT:
        raise FromError(f"the message has more Resent-From and Resent-Sender headers than the {MAX_RESENT} read")
    found = [("From", header_mailbox(headers.get("from", []), "from", display_addresses))]
    if headers.get("sender"):
        found.append(("Sender", header_mailbox(headers["sender"], "sender", display_addresses)))
    for name in ("resent-from", "resent-sender"):
        label = NAMES[name]
        found.extend((label, _one_mailbox(value, label, display_addresses)) for value in headers.get(name, []))
    return found


def _one_mailbox(value, label="From", display_addresses=False):
    raw = _FOLD.sub("", value).strip()
    if len(raw) > MAX_LENGTH:
        raise FromError(f"the {label} header is {len(raw)} characters long; at most {MAX_LENGTH} are read")
    return _read_mailbox(raw, label, display_addresses)


# A user sends with the same From header day after day; parsing one takes the
# standard library 120 to 160 us. Kept by the unfolded value, at most
# MAX_LENGTH characters: the cache stays under 4 MiB of values.
@functools.lru_cache(maxsize=4096)
def _read_mailbox(raw, label, display_addresses):
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in raw):
        raise FromError(f"the {label} header holds control characters")
    header = _REGISTRY("from", raw)
    if header.defects:
        raise FromError(f"the {label} header cannot be read as one address: {header.defects[0]}")
    if any(group.display_name is not None for group in header.groups):
        raise FromError(f"the {label} header holds a group; one mailbox is allowed")
    mailboxes = header.addresses
    if len(mailboxes) != 1:
        raise FromError(f"the {label} header holds {len(mailboxes)} mailboxes; one is allowed")
    mailbox = mailboxes[0]
    if not mailbox.username or not mailbox.domain:
        raise FromError(f"the {label} header's address {mailbox.addr_spec!r} is not local@domain")
    address = f"{mailbox.username}@{mailbox.domain.lower()}"
    tokens = _tokens(header._parse_tree)  # the parse tree the header was read from
    addr_spec = next(token for token in tokens if _kind(token) == "addr-spec")
    if any(_kind(token) == "quoted-string" for token in _tokens(addr_spec)):
        raise FromError(f"the {label} header's address {str(addr_spec).strip()!r} has a quoted local part")
    if any(_kind(token) == "encoded-word" for token in _tokens(addr_spec)):
        raise FromError(f"the {label} header's address holds an encoded word (=?...?=); write the address plainly")
    if not display_addresses:
        shown = [mailbox.display_name or ""]
        shown += [token.content for token in tokens if _kind(token) == "comment"]
        for text in shown:
            for other in _ADDRESS_LIKE.findall(text):
                if other.rstrip(".").lower() != address.lower():
                    raise FromError(
                        f"the {label} header's display name or comment shows {other!r}, not its address <{address}>"
                    )
    return address


def _tokens(token):
    """The token and every token inside it, depth first."""
    found = [token]
    for child in token if isinstance(token, list) else ():
        found.extend(_tokens(child))
    return found


def _kind(token):
    """A parse tree token's type (addr-spec, quoted-string, encoded-word, comment...)."""
    return token.token_type
