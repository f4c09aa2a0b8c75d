# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sender_allowlist module's changes to the validation service's store.

The store (validated_store.py's schema) keeps who may send as which external
address, and who said so: ``user`` (confirmed by link) or ``inventory``
(seeded by Ansible). The module owns the ``inventory`` rows. It removes a
user's row only when an absent entry names it: ``exclusive`` replaces the
inventory's rows and leaves the users' alone.

Pure Python and the standard library's sqlite3.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from ansible_collections.mailops.submission.plugins.module_utils.validated_store import MIGRATIONS


class StoreError(Exception):
    pass


@dataclass
class StorePlan:
    """Pairs (sender, login) to insert as the inventory's, and pairs to delete."""

    insert: set
    delete: set
    pairs: int
    keys: int


@dataclass
class StoreRequest:
    """What the module was asked: entries, normalised (sender, login or None,
    state); bulk_pairs, a set of pairs from src; exclusive; logins, the logins
    that exist (None: all), whose pairs alone stay."""

    entries: list
    bulk_pairs: set
    exclusive: bool
    logins: set | None = None


def plan_changes(inventory, user, request):
    """What turns the store's rows (inventory, user: sets of (sender, login) by
    source) into what the request asks."""
    entries, bulk_pairs, exclusive, logins = request.entries, request.bulk_pairs, request.exclusive, request.logins
    present = {(sender, login) for sender, login, state in entries if state == "present"}
    absent = [(sender, login) for sender, login, state in entries if state == "absent"]

    def named_absent(pair):
        return any(pair[0] == sender and login in (None, pair[1]) for sender, login in absent)

    if exclusive:
        desired = present | bulk_pairs
    else:
        desired = {pair for pair in inventory | bulk_pairs | present if not named_absent(pair)}
    delete = (inventory - desired) | {pair for pair in user if named_absent(pair)}
    if logins is not None:
        delete |= {pair for pair in inventory | user if pair[1] not in logins}
    insert = desired - inventory - user
    after = (inventory | user | insert) - delete
    return StorePlan(insert, delete, len(after), len({sender for sender, _ in after}))


def open_store(path):
    """The store, opened for writing; refuses one the service has not created."""
    if not os.path.isfile(path):
        raise StoreError(f"store {path!r} does not exist: the validation service creates it (submission_validation)")
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        version = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(f"store {path!r} cannot be read as the validation service's store: {exc}") from None
    if version is None or version < MIGRATIONS[0][0]:
        db.close()
        raise StoreError(f"store {path!r} has no schema yet (version {version})")
    return db


def read_rows(db):
    inventory, user = set(), set()
    for sender, login, source in db.execute("SELECT sender, login, source FROM validated_senders"):
        (inventory if source == "inventory" else user).add((sender, login))
    return inventory, user


def write_changes(db, store_plan, now):
    """Apply the plan inside the caller's transaction."""
    db.executemany("DELETE FROM validated_senders WHERE sender = ? AND login = ?", sorted(store_plan.delete))
    db.executemany(
        "INSERT INTO validated_senders (sender, login, source, validated_at) VALUES (?, ?, 'inventory', ?)",
        [(sender, login, now) for sender, login in sorted(store_plan.insert)],
    )


def keep_owner(path):
    """Give SQLite's -wal and -shm files the store's owner: the service, which
    runs as that user, must write them after this (root's) connection."""
    stat = os.stat(path)
    for suffix in ("-wal", "-shm"):
        try:
            os.chown(path + suffix, stat.st_uid, stat.st_gid)
        except FileNotFoundError:
            continue
