# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an account in the inventory must hold, and the allowlist entries it gives.

An account is ``{address, password_hash, aliases, domains, external_senders}``.
Its address is its canonical SASL login (the rule of ``sender_address``);
its password is a crypt hash, never clear text.
"""

from __future__ import annotations

import re
from collections import Counter

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_login

# Dovecot's crypt schemes (with or without the {SCHEME} prefix); never PLAIN.
PASSWORD_HASH_RE = re.compile(
    r"(\{(SHA512-CRYPT|SHA256-CRYPT|BLF-CRYPT|CRYPT|ARGON2I|ARGON2ID)\})?\$[0-9a-z]+\$[^:\s]+"
)


def account_problems(accounts):
    """One line per problem, each naming the account by its address (or its
    position) and never quoting a password or a hash."""
    problems, logins = [], []
    for position, account in enumerate(accounts, start=1):
        if not isinstance(account, dict):
            problems.append(f"account #{position}: not a mapping")
            continue
        address = account.get("address")
        label = address if isinstance(address, str) and address else f"account #{position}"
        try:
            logins.append(normalize_login(address))
        except AddressError as exc:
            problems.append(f"{label}: the address is not a login: {exc.reason}")
        if "password" in account:
            problems.append(f"{label}: a clear-text password; give its hash as password_hash")
        password_hash = account.get("password_hash")
        if not isinstance(password_hash, str) or not PASSWORD_HASH_RE.fullmatch(password_hash):
            problems.append(
                f"{label}: password_hash must be a crypt hash such as {{SHA512-CRYPT}}$6$... or $y$... "
                "(not clear text, not the PLAIN scheme)"
            )
    problems += [f"{login}: listed {count} times" for login, count in Counter(logins).items() if count > 1]
    return problems


def allowlist_account_entries(accounts):
    """sender_allowlist entries from the accounts: each address and alias, and
    @domain for each owned domain, to the account's login."""
    entries = []
    for account in accounts:
        login = account["address"].lower()
        for sender in [account["address"], *account.get("aliases", [])]:
            entries.append({"sender": sender, "login": login})
        for domain in account.get("domains", []):
            entries.append({"sender": "@" + domain, "login": login})
    return entries


def allowlist_validated_entries(accounts):
    """sender_allowlist entries for the external senders the inventory lists as validated."""
    return [
        {"sender": sender, "login": account["address"].lower()}
        for account in accounts
        for sender in account.get("external_senders", [])
    ]


def hosted_domains(accounts, primary_domain):
    """The domains the provider hosts: the primary one, every account's own, and
    the domains accounts own. Their addresses come with the accounts; none is
    validated by link."""
    domains = {primary_domain.lower()}
    for account in accounts:
        domains.add(account["address"].rsplit("@", 1)[-1].lower())
        domains.update(domain.lower() for domain in account.get("domains", []))
    return sorted(domains)
