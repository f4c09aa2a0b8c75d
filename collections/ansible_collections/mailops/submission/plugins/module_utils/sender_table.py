# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sender-allowlist table: sender key -> logins, as smtpd_sender_login_maps reads it.

Pure Python, no Ansible import. A table is a dict from a canonical sender key to
a string: its canonical logins, sorted and joined by commas, as the
source file and Postfix hold them. Its source file, which postmap compiles, has
one line a key: ``sender<TAB>login1,login2``, sorted by key, after a header
comment that records what produced it (see ``header``/``read_header``).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    BULK_FILE_RE,
    AddressError,
    normalize_login,
    normalize_sender,
)

HEADER_PREFIX = "# mailops.submission.sender_allowlist"
_SKIPPED_LINE = re.compile(r"(?m)^[ \t]*(?:#[^\n]*)?\n")


class TableError(ValueError):
    """Bad input for a table; the message names the offending entry or line."""


def parse_pairs(text, origin):
    """Parse ``sender login`` lines (a bulk-load file) into a list of canonical pairs.

    Blank lines and lines starting with '#' are skipped. Raises TableError naming
    the file, the line number and the line at the first bad line.
    """
    pairs = []
    append = pairs.append
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise TableError(f"{origin} line {number}: {line!r}: expected 'sender login'")
        sender, login = fields
        try:
            append((normalize_sender(sender), normalize_login(login)))
        except AddressError as exc:
            raise TableError(f"{origin} line {number}: {exc}") from None
    return pairs


class BulkParse:
    """Parse a bulk-load file into a table.

    A file whose every line is already canonical ASCII (the usual case for a
    machine-written export) is checked by one regex pass and split at C speed;
    any other file is parsed line by line, which normalises IDN domains and
    names the first bad line. On a large file the check runs in a child process
    while this one goes on: ``table`` is then a provisional result that the
    caller may compute with, but not write, until ``confirmed()`` says so.
    """

    def __init__(self, text, origin):
        if not text.endswith("\n"):
            text += "\n"
        self.text, self.origin = text, origin
        folded = text.lower()
        self.table = None
        self._check = None
        # The lower-cased file itself, when postmap would read it as this table:
        # no key twice (postmap keeps the first) and no line that starts with
        # whitespace (a continuation line to postmap). Valid once confirmed.
        self.postmap_text = None
        if folded.isascii():
            self._check = _start_check(folded)
            self._folded = folded
            self.table, unique = _split_table(folded)
            indented = folded.startswith((" ", "\t")) or "\n " in folded or "\n\t" in folded
            if unique and not indented:
                self.postmap_text = folded

    def confirmed(self):
        """True when the provisional table is the file's table; waits for the check."""
        if self.table is None:
            return False
        ok = _check_passed(self._check, self._folded)
        self._folded = None
        return ok

    def parse_slowly(self):
        """The table, by the line-by-line parser; raises TableError naming the first bad line."""
        return pairs_to_table(parse_pairs(self.text, self.origin))


def parse_bulk(text, origin):
    """The table of a bulk-load file (see BulkParse)."""
    parse = BulkParse(text, origin)
    return parse.table if parse.confirmed() else parse.parse_slowly()


_FORK_THRESHOLD = 1 << 20


def _start_check(folded):
    if len(folded) < _FORK_THRESHOLD:
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # pragma: no cover - the child only reports by its exit status
        os._exit(0 if BULK_FILE_RE.fullmatch(folded) else 1)
    return pid


def _check_passed(pid, folded):
    if pid is None:
        return BULK_FILE_RE.fullmatch(folded) is not None
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _split_table(folded):
    # Substring tests run at memchr speed; the regex only runs when a line may need skipping.
    if "#" in folded or "\n\n" in folded or folded.startswith(("\n", " ", "\t")) or "\n " in folded or "\n\t" in folded:
        folded = _SKIPPED_LINE.sub("", folded)
    tokens = folded.split()
    senders, logins = tokens[0::2], tokens[1::2]
    if len(senders) != len(logins):
        return None, False
    table = dict(zip(senders, logins, strict=True))
    if len(table) == len(senders):
        return table, True
    return pairs_to_table(zip(senders, logins, strict=True)), False


def parse_trusted_table(text):
    """Parse a source file this module wrote and whose digest still matches: no checks needed."""
    tokens = text.split()
    return dict(zip(tokens[0::2], tokens[1::2], strict=True))


def parse_entry(index, entry):
    """Validate one ``{sender, login, state}`` entry; return (sender, login or None, state)."""
    label = f"entries[{index}]"
    if not isinstance(entry, dict):
        raise TableError(f"{label}: {entry!r}: expected a mapping with sender, login and state")
    unknown = set(entry) - {"sender", "login", "state"}
    if unknown:
        raise TableError(f"{label}: {entry!r}: unknown key(s) {', '.join(sorted(unknown))}")
    state = entry.get("state") or "present"
    if state not in ("present", "absent"):
        raise TableError(f"{label}: {entry!r}: state must be present or absent, not {state!r}")
    if entry.get("sender") is None:
        raise TableError(f"{label}: {entry!r}: sender is required")
    try:
        sender = normalize_sender(entry["sender"])
        login = entry.get("login")
        if login is None:
            if state == "present":
                raise TableError(f"{label}: {entry!r}: login is required when state is present")
        else:
            login = normalize_login(login)
    except AddressError as exc:
        raise TableError(f"{label} (sender {entry.get('sender')!r}, login {entry.get('login')!r}): {exc}") from None
    return sender, login, state


def pairs_to_table(pairs):
    """Group (sender, login) pairs into a table."""
    grouped = {}
    for sender, login in pairs:
        logins = grouped.get(sender)
        if logins is None:
            grouped[sender] = login
        elif isinstance(logins, str):
            if logins != login:
                grouped[sender] = {logins, login}
        else:
            logins.add(login)
    return {sender: v if isinstance(v, str) else ",".join(sorted(v)) for sender, v in grouped.items()}


def merge(table, additions):
    """Add the logins of additions to table, in place."""
    for sender, logins in additions.items():
        old = table.get(sender)
        table[sender] = logins if old is None or old == logins else union(old, logins)
    return table


def apply_changes(current, entries, bulk, exclusive):
    """Return the table that results from applying entries and a bulk table to current.

    exclusive: the result holds exactly the present entries and the bulk table.
    Otherwise those are added to current, and absent entries are removed from it
    (an absent entry without a login removes the sender key entirely).
    """
    present = pairs_to_table((s, lg) for s, lg, state in entries if state == "present")
    if exclusive:
        return merge(dict(bulk), present)
    table = merge(merge(dict(current), bulk), present)
    for sender, login, state in entries:
        if state != "absent" or sender not in table:
            continue
        if login is None:
            del table[sender]
            continue
        remaining = [x for x in table[sender].split(",") if x != login]
        if remaining:
            table[sender] = ",".join(remaining)
        else:
            del table[sender]
    return table


def union(*values):
    """The logins of several table values, as one value."""
    return ",".join(sorted({login for value in values for login in value.split(",")}))


def count_pairs(table):
    """(sender, login) pairs in a table: one more than its commas, per key, counted at C speed."""
    return len(table) + ",".join(table.values()).count(",") - max(len(table) - 1, 0)


class Summary:
    """The changes between two tables, counted, with samples for a diff.

    keys_to_write and keys_to_delete are lists only when they hold at most
    key_limit keys (an incremental update); otherwise they are None.
    """

    def __init__(self, current, desired, key_limit, sample=1000):
        if current == desired:
            differing, gone = [], []
        else:
            differing = desired.items() - current.items() if current else desired.items()
            gone = current.keys() - desired.keys()
        if not current:
            self.added = count_pairs(desired)
            self.removed = 0
        else:
            self.added = self.removed = 0
            for sender, logins in differing:
                old = set(current[sender].split(",")) if sender in current else set()
                new = set(logins.split(","))
                self.added += len(new - old)
                self.removed += len(old - new)
            self.removed += count_pairs({sender: current[sender] for sender in gone})
        small = len(differing) + len(gone) <= key_limit
        self.keys_to_write = sorted(sender for sender, _ in differing) if small else None
        self.keys_to_delete = sorted(gone) if small else None
        self._sample = (current, desired, differing, gone, sample)

    def diff(self):
        """The first pairs removed and added, in key order, as diff text."""
        current, desired, differing, gone, sample = self._sample

        def logins(table, sender):
            return table[sender].split(",") if sender in table else []

        first = heapq.nsmallest(sample, [sender for sender, _ in differing])
        added = [(s, lg) for s in first for lg in logins(desired, s) if lg not in logins(current, s)]
        removed = [(s, lg) for s in first for lg in logins(current, s) if lg not in logins(desired, s)]
        removed += [(s, lg) for s in heapq.nsmallest(sample, gone) for lg in logins(current, s)]
        return diff_text(sorted(removed)[:sample], total=self.removed), diff_text(added[:sample], total=self.added)


def render_body(table):
    """The source file's lines, sorted by key; built with C-level joins for large tables."""
    if not table:
        return ""
    keys = sorted(table)
    values = map(table.__getitem__, keys)
    return "\n".join(map("\t".join, zip(keys, values, strict=True))) + "\n"


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
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split(None, 1)
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise TableError(f"{origin} line {number}: {line!r}: expected 'sender logins'")
        sender, logins = fields
        try:
            sender = normalize_sender(sender)
            parsed = ",".join(sorted({normalize_login(x) for x in logins.replace(",", " ").split()}))
        except AddressError as exc:
            raise TableError(f"{origin} line {number}: {exc}") from None
        table[sender] = union(table[sender], parsed) if sender in table else parsed
    return table


def input_digest(entries, src_digest, exclusive, map_type):
    """A digest of everything a run's result depends on besides the current table."""
    material = json.dumps(
        {"entries": entries, "src": src_digest, "exclusive": exclusive, "type": map_type},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def diff_text(pairs, limit=1000, total=None):
    total = len(pairs) if total is None else total
    lines = [f"{sender} {login}" for sender, login in pairs[:limit]]
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more")
    return "\n".join(lines) + ("\n" if lines else "")
