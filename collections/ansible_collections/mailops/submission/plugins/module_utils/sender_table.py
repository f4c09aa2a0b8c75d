# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sender-allowlist table: sender key -> logins, as smtpd_sender_login_maps reads it.

Pure Python, no Ansible import. A table is a dict from a canonical sender key to
a tuple of canonical logins, sorted. Its source file, which postmap compiles, has
one line a key: ``sender<TAB>login1,login2``, sorted by key, after a header
comment that records what produced it (see ``header``/``read_header``).
"""

from __future__ import annotations

import hashlib
import json

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    normalize_login,
    normalize_sender,
)

HEADER_PREFIX = "# mailops.submission.sender_allowlist"


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
    return {sender: (v,) if isinstance(v, str) else tuple(sorted(v)) for sender, v in grouped.items()}


def apply_changes(current, entries, bulk_pairs, exclusive):
    """Return the table that results from applying entries and bulk pairs to current.

    exclusive: the result holds exactly the present entries and the bulk pairs.
    Otherwise those are added to current, and absent entries are removed from it
    (an absent entry without a login removes the sender key entirely).
    """
    present = [(s, lg) for s, lg, state in entries if state == "present"]
    if exclusive:
        return pairs_to_table(list(bulk_pairs) + present)
    table = dict(current)
    additions = pairs_to_table(list(bulk_pairs) + present)
    for sender, logins in additions.items():
        old = table.get(sender)
        table[sender] = logins if old is None else tuple(sorted(set(old) | set(logins)))
    for sender, login, state in entries:
        if state != "absent" or sender not in table:
            continue
        if login is None:
            del table[sender]
            continue
        remaining = tuple(x for x in table[sender] if x != login)
        if remaining:
            table[sender] = remaining
        else:
            del table[sender]
    return table


def table_pairs(table):
    return {(sender, login) for sender, logins in table.items() for login in logins}


def compare(current, desired):
    """What changes between two tables.

    Returns (added pairs, removed pairs, keys to write, keys to delete), where keys
    to write are the keys whose logins are new or differ.
    """
    if current is desired or current == desired:
        return [], [], [], []
    added, removed, write, delete = [], [], [], []
    for sender, logins in desired.items():
        old = current.get(sender)
        if old == logins:
            continue
        write.append(sender)
        old_set = set(old or ())
        added.extend((sender, login) for login in logins if login not in old_set)
        removed.extend((sender, login) for login in old_set.difference(logins))
    for sender, logins in current.items():
        if sender not in desired:
            delete.append(sender)
            removed.extend((sender, login) for login in logins)
    return sorted(added), sorted(removed), sorted(write), sorted(delete)


def render_body(table):
    return "".join(f"{sender}\t{','.join(table[sender])}\n" for sender in sorted(table))


def body_digest(body):
    return hashlib.sha256(body.encode()).hexdigest()


def header(input_digest, body):
    """The first line of a source file: what input produced it, and a digest of the rest.

    A later run with the same input finds the same header and an unchanged body,
    and then knows the table is current without parsing either.
    """
    return f"{HEADER_PREFIX} input={input_digest} body={body_digest(body)}\n"


def read_header(data):
    """Return (input digest, body digest recorded, body) of a source file's bytes."""
    first, sep, rest = data.partition(b"\n")
    prefix = HEADER_PREFIX.encode()
    if not first.startswith(prefix) or not sep:
        return None, None, data
    fields = dict(f.split("=", 1) for f in first[len(prefix) :].decode("ascii", "replace").split() if "=" in f)
    return fields.get("input"), fields.get("body"), rest


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
            parsed = tuple(sorted({normalize_login(x) for x in logins.replace(",", " ").split()}))
        except AddressError as exc:
            raise TableError(f"{origin} line {number}: {exc}") from None
        table[sender] = tuple(sorted(set(table.get(sender, ())) | set(parsed)))
    return table


def input_digest(entries, src_digest, exclusive, map_type):
    """A digest of everything a run's result depends on besides the current table."""
    material = json.dumps(
        {"entries": entries, "src": src_digest, "exclusive": exclusive, "type": map_type},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def diff_text(pairs, limit=1000):
    lines = [f"{sender} {login}" for sender, login in pairs[:limit]]
    if len(pairs) > limit:
        lines.append(f"... and {len(pairs) - limit} more")
    return "\n".join(lines) + ("\n" if lines else "")
