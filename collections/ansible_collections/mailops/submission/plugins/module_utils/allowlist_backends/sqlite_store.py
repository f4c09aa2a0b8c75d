# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SQLite-store backend of sender_allowlist (option ``store``): the
validation service's store (store_senders.py), changed in one transaction that
check mode, or a run that changes nothing, rolls back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time

from ansible_collections.mailops.submission.plugins.module_utils import store_senders
from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.stores import StoreBackend
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import TableError


class SqliteStoreBackend(StoreBackend):
    """The validation service's SQLite store (option store)."""

    def __init__(self, module, request):
        super().__init__(module, request, request.params["store"])
        self.db = None
        self.commit = False

    @contextlib.contextmanager
    def session(self):
        self.rows_request = self.store_request(self.request.entries())
        try:
            db = store_senders.open_store(self.label)
        except store_senders.StoreError as exc:
            raise TableError(str(exc)) from None
        try:
            db.execute("BEGIN IMMEDIATE")
            self.db = db
            yield
            db.execute("COMMIT" if self.commit else "ROLLBACK")
            store_senders.keep_owner(self.label)
        except sqlite3.Error as exc:
            raise TableError(f"store {self.label} left unchanged: {exc}") from None
        finally:
            db.close()
        self.done = True

    def plan(self):
        inventory, user = store_senders.read_rows(self.db)
        self.changes = store_senders.plan_changes(inventory, user, self.rows_request)

    def apply(self):
        if self.changed:
            store_senders.write_changes(self.db, self.changes, int(time.time()))
            self.commit = True
