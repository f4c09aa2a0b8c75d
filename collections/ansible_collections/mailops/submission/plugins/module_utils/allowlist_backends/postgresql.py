# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL backend of sender_allowlist (option ``database``): the
fleet database's validated senders (database_senders.py), with the same rules
as the SQLite store, in one transaction (database_connection.transaction) that
check mode, or a run that changes nothing, rolls back.
"""

from __future__ import annotations

import contextlib
import time

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.mailops.submission.plugins.module_utils import database_senders
from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.common import MissingLibrary
from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.stores import StoreBackend
from ansible_collections.mailops.submission.plugins.module_utils.database_connection import (
    PSYCOPG_IMPORT_ERROR,
    DatabaseError,
    connect,
    psycopg,
    transaction,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import TableError
from ansible_collections.mailops.submission.plugins.module_utils.store_senders import plan_changes


class DatabaseBackend(StoreBackend):
    """The fleet's PostgreSQL database (option database), on the database host."""

    def __init__(self, module, request):
        super().__init__(module, request, f"database {request.params['database']}")
        self.cursor = self.transaction = None

    @contextlib.contextmanager
    def session(self):
        entries = self.request.entries()
        if psycopg is None:
            raise MissingLibrary(missing_required_lib("psycopg (python3-psycopg)"), PSYCOPG_IMPORT_ERROR)
        self.rows_request = self.store_request(entries)
        try:
            with transaction(connect(self.params), self.label) as (cursor, outcome):
                self.cursor, self.transaction = cursor, outcome
                yield
        except DatabaseError as exc:
            raise TableError(str(exc)) from None
        self.done = True

    def plan(self):
        request = self.rows_request
        # Entries alone (no src, exclusive or logins): only their senders' rows matter.
        partial = not (request.exclusive or request.bulk_pairs or request.logins is not None)
        senders = {sender for sender, _, _ in request.entries} if partial else None
        inventory, user = database_senders.read_rows(self.cursor, senders)
        self.changes = plan_changes(inventory, user, request)
        if partial:
            database_senders.count_after(self.cursor, inventory, user, self.changes)

    def apply(self):
        if self.changed:
            database_senders.write_changes(self.cursor, self.changes, int(time.time()))
            self.transaction.commit = True
