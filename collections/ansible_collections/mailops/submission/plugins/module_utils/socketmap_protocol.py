# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Postfix's socketmap_table(5) protocol: netstrings, ``name key`` requests.

Pure Python, no Ansible import: the validation service's map server and the
header-From milter, its client, import it unchanged.
"""

from __future__ import annotations

# socketmap_table(5): requests are at most 100000 bytes.
MAX_REQUEST = 100000
LENGTH_DIGITS = len(str(MAX_REQUEST))


class NetstringError(ValueError):
    pass


def netstring(payload):
    return b"%d:%s," % (len(payload), payload)


def split_netstrings(buffer, limit=MAX_REQUEST):
    """The complete netstrings' payloads at the start of buffer, and what follows them."""
    digits_max = len(str(limit))
    payloads = []
    while buffer:
        colon = buffer.find(b":", 0, digits_max + 1)
        if colon == -1:
            if len(buffer) > digits_max or not buffer.isdigit():
                raise NetstringError(f"bad length {bytes(buffer[: digits_max + 1])!r}")
            break
        digits = buffer[:colon]
        if not digits.isdigit():
            raise NetstringError(f"bad length {bytes(digits)!r}")
        length = int(digits)
        if length > limit:
            raise NetstringError(f"a netstring of {length} bytes")
        end = colon + 1 + length
        if len(buffer) <= end:
            break
        if buffer[end : end + 1] != b",":
            raise NetstringError("netstring not terminated by ','")
        payloads.append(bytes(buffer[colon + 1 : end]))
        buffer = buffer[end + 1 :]
    return payloads, buffer
