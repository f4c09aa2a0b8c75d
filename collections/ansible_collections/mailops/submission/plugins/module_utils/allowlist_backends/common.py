# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every sender_allowlist backend shares: the request, the result and the
protocol the module drives them by (the two stores share more: stores.py).

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

from ansible_collections.mailops.submission.plugins.module_utils.sender_table import normalize_entry


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
