# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The allowlist's source file: the text postmap compiles, and its header.

One line a key, ``sender<TAB>login1,login2``, sorted by key, after a header
comment that records what produced the file (``header``/``read_header``), so
that a later run recognises an unchanged table without parsing it, and finds
one key's line by binary search (``find_line``).

Pure Python, no Ansible import.
"""

from __future__ import annotations

import hashlib
import itertools
import json

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    normalize_login,
    normalize_sender,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import TableError, table_lines, union

HEADER_PREFIX = "# mailops.submission.sender_allowlist"

# The map types postmap compiles the source into, and the suffix each adds to the file's name.
MAP_SUFFIX = {"lmdb": ".lmdb", "hash": ".db", "cdb": ".cdb"}


def render_body(table):
    """The source file's lines, sorted by key; built with C-level joins for large tables."""
    if not table:
        return ""
    keys = sorted(table)
    values = map(table.__getitem__, keys)
    return "\n".join(map("\t".join, zip(keys, values, strict=True))) + "\n"


def sort_pair_lines(text):
    """The lines of text sorted as render_body sorts their keys.

    text holds one pair a line, ``key login`` with one space or tab between, no key
    twice, and ends with a newline. No two lines then begin with the same key, and
    the separator sorts below every character of a key.
    """
    lines = text.split("\n")
    lines.pop()  # after the last newline
    lines.sort()
    return lines


def render_pair_lines(lines):
    """render_body's text for the table of sorted pair lines (sort_pair_lines), without the table."""
    # The empty string last gives the final newline without copying the text once more.
    return "\n".join(itertools.chain(lines, [""])).replace(" ", "\t") if lines else ""


def header(input_digest, body, keys, pairs, stamp):
    """The first line of a source file (bytes): what produced it, a digest and the size of the rest,
    its counts, and the mtime the file is given once written (stamp).

    A later run with the same input finds the same header and an unchanged body,
    and then knows the table is current without parsing it.
    """
    digest = hashlib.sha256(body).hexdigest()
    return (
        f"{HEADER_PREFIX} input={input_digest} body={digest} keys={keys} pairs={pairs}"
        f" bodysize={len(body)} stamp={stamp}\n"
    ).encode()


def read_header(data):
    """Split a source file's bytes into (header fields, offset of the body).

    Fields are empty when the file has no header this module wrote.
    """
    end = data.find(b"\n")
    prefix = HEADER_PREFIX.encode()
    if end < 0 or not data.startswith(prefix):
        return {}, 0
    first = data[len(prefix) : end].decode("ascii", "replace")
    return dict(f.split("=", 1) for f in first.split() if "=" in f), end + 1


def find_line(body, key):
    """Where the line of key is, or would be, in a sorted source body (bytes).

    Returns (start, end, exists): the byte range of the key's line (empty when the
    key is absent, at the place it belongs). Lines are sorted by key and no key
    holds a byte below TAB, so comparing a whole line with ``key TAB`` orders it
    the way its key orders; a binary search over byte offsets finds the line
    without splitting the body.
    """
    probe = key + b"\t"
    lo, hi = 0, len(body)
    while lo < hi:
        mid = (lo + hi) // 2
        start = body.rfind(b"\n", lo, mid)
        start = lo if start < 0 else start + 1
        end = body.find(b"\n", start)
        end = len(body) if end < 0 else end + 1
        if body[start:end] < probe:
            lo = end
        else:
            hi = start
    if body.startswith(probe, lo):
        end = body.find(b"\n", lo)
        return lo, (len(body) if end < 0 else end + 1), True
    return lo, lo, False


def parse_table(text, origin):
    """Parse a source file this module wrote (or any ``sender login[,login]`` file)."""
    table = {}
    for number, (raw_sender, logins) in table_lines(text, origin, "sender logins", maxsplit=1):
        try:
            sender = normalize_sender(raw_sender)
            parsed = ",".join(sorted({normalize_login(x) for x in logins.replace(",", " ").split()}))
        except AddressError as exc:
            raise TableError(f"{origin} line {number}: {exc}") from None
        table[sender] = union(table[sender], parsed) if sender in table else parsed
    return table


def parse_trusted_table(text):
    """Parse a source file this module wrote and whose digest still matches: no checks needed."""
    tokens = text.split()
    return dict(zip(tokens[0::2], tokens[1::2], strict=True))


def input_digest(entries, src_digest, exclusive, map_type):
    """A digest of everything a run's result depends on besides the current table."""
    material = json.dumps(
        {"entries": entries, "src": src_digest, "exclusive": exclusive, "type": map_type},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()
