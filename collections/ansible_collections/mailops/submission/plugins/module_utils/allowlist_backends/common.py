# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every sender_allowlist backend shares: the request, the result, the
protocol the module drives them by, and the planning of the two stores.

The module runs any backend the same way::

    with backend.session():     # the lock or transaction that plan and apply share
        backend.plan()          # read and compute; writes nothing
        if not check_mode:
            backend.apply()     # write what plan found (nothing, if nothing changes)
    backend.result()            # return values; after a failure, what can be reported

Bad input and failed writes raise TableError, whose message names the entry,
line or file; a Python library that is not installed raises MissingLibrary.
"""

from __future__ import annotations

import abc
import dataclasses

from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    TableError,
    diff_text,
    normalize_entry,
    normalize_login_param,
)
from ansible_collections.mailops.submission.plugins.module_utils.store_senders import StoreRequest
from ansible_collections.mailops.submission.plugins.module_utils.table_source import parse_table


class MissingLibrary(Exception):
    """A library the backend needs is missing: Ansible's message and the import's traceback."""

    def __init__(self, msg, traceback):
        super().__init__(msg)
        self.msg = msg
        self.traceback = traceback


@dataclasses.dataclass
class Request:
    """What a run asks of any backend: the module's parameters, check mode and diff mode."""

    params: dict
    check_mode: bool = False
    diff: bool = False

    @classmethod
    def from_module(cls, module):
        return cls(module.params, module.check_mode, module._diff)

    def entries(self):
        """The entries as (sender, login or None, state), normalised; TableError names a bad one."""
        return [normalize_entry(index, entry) for index, entry in enumerate(self.params["entries"])]


@dataclasses.dataclass
class Result:
    """The module's return values for a backend; None values are not returned."""

    changed: bool = False
    added: int = 0
    removed: int = 0
    pairs: int | None = None
    keys: int | None = None
    rebuild: str = "none"
    map: str | None = None
    diff: dict | None = None

    def set_diff(self, label, before, after):
        """The diff of pairs removed (before) and added (after), under headers naming label."""
        self.diff = {
            "before_header": f"{label} (pairs removed)",
            "after_header": f"{label} (pairs added)",
            "before": before,
            "after": after,
        }

    def as_dict(self):
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {name: value for name, value in values.items() if value is not None}


class AllowlistBackend(abc.ABC):
    """One place the allowlist lives; this file's docstring shows how the module runs it."""

    def __init__(self, module, request):
        self.module = module
        self.request = request
        self.params = request.params
        self.outcome = Result()

    @abc.abstractmethod
    def session(self):
        """A context manager: checks the input, then holds the lock or transaction of plan and apply."""

    @abc.abstractmethod
    def plan(self):
        """Read the current pairs and compute the changes; writes nothing."""

    @abc.abstractmethod
    def apply(self):
        """Make the planned changes (never called in check mode)."""

    def result(self):
        """The module's return values as far as the run got."""
        return self.outcome.as_dict()


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
