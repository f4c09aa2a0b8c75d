# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sender_allowlist module's changes to the fleet database's validated senders.

The same rows and rules as the SQLite store (store_senders.plan_changes): the
module owns the ``inventory`` rows, and a user's row goes only when an absent
entry names it or its login is no account. Rows are read under a lock that
other writers of the table wait for (the validation service's readers do not),
inserted with COPY and deleted with one statement, in the caller's transaction.
"""

from __future__ import annotations

# Larger than this, the pairs to insert go through COPY (one round trip for all).
COPY_MIN_ROWS = 64


def read_rows(cursor, senders=None):
    """(inventory, user): sets of (sender, login) by source; only those of
    senders when given (a run that names its keys need not read the rest)."""
    cursor.execute("LOCK TABLE validated_senders IN SHARE ROW EXCLUSIVE MODE")
    inventory, user = set(), set()
    if senders is None:
        cursor.execute("SELECT sender, login, source FROM validated_senders")
    else:
        cursor.execute("SELECT sender, login, source FROM validated_senders WHERE sender = ANY(%s)", (list(senders),))
    for sender, login, source in cursor:
        (inventory if source == "inventory" else user).add((sender, login))
    return inventory, user


def count_after(cursor, inventory, user, store_plan):
    """Set the plan's pair and key counts from the table's totals, when only
    some senders' rows were read (inventory, user: those rows)."""
    cursor.execute("SELECT count(*), count(DISTINCT sender) FROM validated_senders")
    pairs, keys = cursor.fetchone()
    before = inventory | user
    after = (before | store_plan.insert) - store_plan.delete
    store_plan.pairs = pairs + len(after) - len(before)
    store_plan.keys = keys + len({s for s, _ in after}) - len({s for s, _ in before})


def write_changes(cursor, store_plan, now):
    """Apply a store_senders.StorePlan inside the caller's transaction."""
    if store_plan.delete:
        senders, logins = zip(*sorted(store_plan.delete), strict=True)
        cursor.execute(
            "DELETE FROM validated_senders AS v USING unnest(%s::text[], %s::text[]) AS d (sender, login)"
            " WHERE v.sender = d.sender AND v.login = d.login",
            (list(senders), list(logins)),
        )
    rows = sorted(store_plan.insert)
    blocks = _copy_blocks(rows, now) if len(rows) >= COPY_MIN_ROWS else None
    if blocks is not None:
        with cursor.copy("COPY validated_senders (sender, login, source, validated_at) FROM STDIN") as copy:
            for block in blocks:
                copy.write(block)
    elif rows:
        cursor.executemany(
            "INSERT INTO validated_senders (sender, login, source, validated_at) VALUES (%s, %s, 'inventory', %s)",
            [(sender, login, now) for sender, login in rows],
        )


def _copy_blocks(rows, now, size=50000):
    """The rows in COPY's text format, in large blocks; None if a value holds a
    character that format escapes (canonical addresses hold none)."""
    suffix = f"\tinventory\t{now}\n"
    blocks = []
    for start in range(0, len(rows), size):
        part = rows[start : start + size]
        block = "".join(f"{sender}\t{login}{suffix}" for sender, login in part)
        if block.count("\t") != 3 * len(part) or block.count("\n") != len(part) or "\\" in block or "\r" in block:
            return None
        blocks.append(block)
    return blocks
