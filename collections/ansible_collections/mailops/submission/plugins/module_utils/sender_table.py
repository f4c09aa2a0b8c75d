# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sender-allowlist table: sender key -> logins, as smtpd_sender_login_maps reads it.

A table is a dict from a canonical sender key to a string: its canonical logins,
sorted and joined by commas, as the source file (``table_source``) and Postfix
hold them. Here: entries checked and normalised, tables merged and changed, and
the changes between two tables counted.

Pure Python, no Ansible import.
"""

from __future__ import annotations

import heapq
import itertools

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    normalize_login,
    normalize_sender,
)


class TableError(ValueError):
    """Bad input for a table; the message names the offending entry or line."""


def table_lines(text, origin, expected, maxsplit=-1):
    """(line number, [key, value]) for each line of a ``key value`` file that is
    not blank or a comment ('#'); TableError naming origin, the line number and
    the line for a line of another shape (expected says what it should be)."""
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split(None, maxsplit)
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise TableError(f"{origin} line {number}: {line!r}: expected {expected!r}")
        yield number, fields


def normalize_entry(index, entry):
    """One entry of the module's ``entries`` as (sender, login or None, state), normalised.

    The argument spec has already checked its keys, types and choices, and that a
    present entry has a login.
    """
    sender, login, state = entry["sender"], entry.get("login"), entry.get("state") or "present"
    try:
        return normalize_sender(sender), None if login is None else normalize_login(login), state
    except AddressError as exc:
        raise TableError(f"entries[{index}] (sender {sender!r}, login {login!r}): {exc}") from None


def normalize_login_param(index, login):
    """One item of the module's ``logins``, normalised."""
    try:
        return normalize_login(login)
    except AddressError as exc:
        raise TableError(f"logins[{index}] ({login!r}): {exc}") from None


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

    @classmethod
    def of_load(cls, first_pairs, pairs, sample=1000):
        """The changes that fill an empty table with pairs pairs, in a full rebuild (no keys listed).

        first_pairs: the table's (sender, login) pairs in key order, one a key, of
        which the first sample are read for the diff; the rest of the table is not needed.
        """
        summary = cls({}, dict(itertools.islice(first_pairs, sample)), key_limit=-1, sample=sample)
        summary.added = pairs
        return summary

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


def diff_text(pairs, limit=1000, total=None):
    total = len(pairs) if total is None else total
    lines = [f"{sender} {login}" for sender, login in pairs[:limit]]
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more")
    return "\n".join(lines) + ("\n" if lines else "")
