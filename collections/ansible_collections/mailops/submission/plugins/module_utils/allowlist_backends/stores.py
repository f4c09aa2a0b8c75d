# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the two stores of sender_allowlist share (the SQLite store and the
fleet database): the request of rows, one planner (store_senders.plan_changes),
and the report of a run whose transaction ended.
"""

from __future__ import annotations

from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.common import (
    AllowlistBackend,
    Result,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    TableError,
    diff_text,
    normalize_login_param,
)
from ansible_collections.mailops.submission.plugins.module_utils.store_senders import StoreRequest
from ansible_collections.mailops.submission.plugins.module_utils.table_source import parse_table


class StoreBackend(AllowlistBackend):
    """A store of (sender, login) rows with their source (the SQLite store, the
    fleet database): one planner (store_senders.plan_changes), one transaction.
    It reports only a run whose transaction ended, committed or rolled back."""

    def __init__(self, module, request, label):
        super().__init__(module, request)
        self.label = label  # the store's name in messages and the diff's headers
        self.rows_request = self.changes = None
        self.done = False

    def store_request(self, entries):
        """The StoreRequest of this run; TableError for bad input."""
        for index, (sender, _login, _state) in enumerate(entries):
            if sender.startswith("@"):
                raise TableError(f"entries[{index}] (sender {sender!r}): the store holds addresses, not @domain keys")
        bulk_pairs = store_src_pairs(self.params)
        return StoreRequest(
            entries, bulk_pairs, self.params["exclusive"], store_logins(self.params, entries, bulk_pairs)
        )

    @property
    def changed(self):
        return bool(self.changes.insert or self.changes.delete)

    def result(self):
        if not self.done:
            return {}
        changes = self.changes
        outcome = Result(self.changed, len(changes.insert), len(changes.delete), changes.pairs, changes.keys)
        if self.request.diff:
            # The first 1000 pairs of each side, in order, and no count of the rest.
            removed, added = sorted(changes.delete)[:1000], sorted(changes.insert)[:1000]
            outcome.set_diff(self.label, diff_text(removed), diff_text(added))
        return outcome.as_dict()


def store_src_pairs(params):
    """The pairs of src for the store (addresses only), or an empty set."""
    if not params["src"]:
        return set()
    try:
        with open(params["src"], encoding="utf-8") as handle:
            bulk = parse_table(handle.read(), f"src {params['src']}")
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"src {params['src']!r} cannot be read: {exc}") from None
    pairs = {(sender, login) for sender, logins in bulk.items() for login in logins.split(",")}
    domain_keys = sorted(sender for sender, _ in pairs if sender.startswith("@"))
    if domain_keys:
        raise TableError(f"src {params['src']}: the store holds addresses, not @domain keys ({domain_keys[0]})")
    return pairs


def store_logins(params, entries, bulk_pairs):
    """The logins option, normalised (None when unset); a pair to add for another login is an error."""
    if params["logins"] is None:
        return None
    logins = {normalize_login_param(index, login) for index, login in enumerate(params["logins"])}
    for index, (sender, login, state) in enumerate(entries):
        if state == "present" and login not in logins:
            raise TableError(f"entries[{index}] (sender {sender!r}): login {login!r} is not among logins")
    for sender, login in sorted(bulk_pairs):
        if login not in logins:
            raise TableError(f"src {params['src']}: {sender} {login}: login {login!r} is not among logins")
    return logins
