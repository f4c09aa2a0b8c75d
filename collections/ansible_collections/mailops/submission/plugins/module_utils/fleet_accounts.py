# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet_accounts module's input and plan: accounts, their aliases and
owned domains, as rows of the fleet database (fleet_schema.py).

Every account is checked before anything is read or written: its login, its
hash (strong crypt schemes only) and the logins listed twice by account_rules'
one check of account entries (the inventory's is the same), its aliases and
domains by the address rule. A problem names the account and the value, never
a hash.

Pure Python, no database import: the module reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.mailops.submission.plugins.module_utils.account_rules import account_entry_problems
from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    normalize_login,
    normalize_sender,
)


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class Account:
    login: str
    password_hash: str
    aliases: frozenset = field(default_factory=frozenset)
    domains: frozenset = field(default_factory=frozenset)


# account_entry_problems' problems as this module reports them: the first one
# stops the run.
_PROBLEM_MESSAGES = {
    "entry": "accounts[{index}]: not a mapping",
    "address": "accounts[{index}]: address {address!r} is not a login: {reason}",
    "password": "accounts[{index}] ({login}): a clear-text password; give its hash as password_hash",
    "password_hash": "accounts[{index}] ({login}): {reason}",
    "listed": "accounts[{index}] ({login}): listed already as accounts[{first}]",
}


def _account(index, raw):
    """One entry that passed the account checks as an Account (state absent: None hash); its
    aliases and domains by the address rule, AccountError naming the entry."""
    login = normalize_login(raw["address"])
    if raw.get("state", "present") == "absent":
        return Account(login, None)
    label = f"accounts[{index}] ({login})"
    aliases = set()
    for alias in raw.get("aliases") or []:
        try:
            key = normalize_sender(alias)
        except AddressError as exc:
            raise AccountError(f"{label}: alias {alias!r}: {exc.reason}") from None
        if key.startswith("@"):
            raise AccountError(f"{label}: alias {alias!r} is a whole domain; list it in domains")
        if key != login:
            aliases.add(key)
    domains = set()
    for domain in raw.get("domains") or []:
        try:
            key = normalize_sender("@" + str(domain))
        except AddressError as exc:
            raise AccountError(f"{label}: domain {domain!r}: {exc.reason}") from None
        domains.add(key[1:])
    return Account(login, raw["password_hash"], frozenset(aliases), frozenset(domains))


def normalize_accounts(raw_accounts):
    """The entries as Accounts; the first problem of account_rules' check (a
    login listed twice included), then of an alias or a domain, or a domain
    with two owners, is an AccountError."""
    problem = next(account_entry_problems(raw_accounts, states=True), None)
    if problem is not None:
        raise AccountError(_PROBLEM_MESSAGES[problem.kind].format(**vars(problem)))
    accounts, domain_owner = [], {}
    for index, raw in enumerate(raw_accounts):
        account = _account(index, raw)
        for domain in account.domains:
            if domain in domain_owner:
                raise AccountError(
                    f"accounts[{index}] ({account.login}): domain {domain} is {domain_owner[domain]}'s already;"
                    " a domain has one owner"
                )
            domain_owner[domain] = account.login
        accounts.append(account)
    return accounts


@dataclass
class AccountPlan:
    """The changes that turn the current accounts into the desired ones."""

    added: list
    removed: list
    updated: list
    desired: dict
    current: dict

    @property
    def changed(self):
        return bool(self.added or self.removed or self.updated)

    def diff(self):
        """Before and after as text, with 'password: set' in place of any hash."""

        def render(accounts, logins):
            lines = []
            for login in logins:
                account = accounts[login]
                lines.append(f"{login}: password set")
                lines += [f"{login}: alias {alias}" for alias in sorted(account.aliases)]
                lines += [f"{login}: domain {domain}" for domain in sorted(account.domains)]
            return "".join(line + "\n" for line in lines)

        touched = sorted(set(self.removed) | set(self.updated))
        before = render(self.current, [login for login in touched if login in self.current])
        after = render(self.desired, sorted(set(self.added) | set(self.updated)))
        return before, after


def plan_accounts(current, entries, exclusive):
    """current: {login: Account} from the database; entries: normalised Accounts
    (password_hash None means state absent). exclusive: every other account goes."""
    desired = {} if exclusive else dict(current)
    for account in entries:
        if account.password_hash is None:
            desired.pop(account.login, None)
        else:
            desired[account.login] = account
    added = sorted(set(desired) - set(current))
    removed = sorted(set(current) - set(desired))
    updated = sorted(login for login in set(desired) & set(current) if desired[login] != current[login])
    return AccountPlan(added, removed, updated, desired, current)


def fleet_account_entries(accounts):
    """The inventory's accounts as fleet_accounts entries (external senders are the allowlist's)."""
    return [
        {
            "address": account["address"],
            "password_hash": account["password_hash"],
            "aliases": list(account.get("aliases", [])),
            "domains": list(account.get("domains", [])),
        }
        for account in accounts
    ]
