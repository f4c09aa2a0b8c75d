# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an account in the inventory must hold, and the allowlist entries it gives.

An account is ``{address, password_hash, aliases, domains, external_senders}``.
Its address is its canonical SASL login (the rule of ``sender_address``);
its password is a slow, salted crypt hash, never clear text or a fast hash.
"""

from __future__ import annotations

import re
from collections import Counter

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_login

# The crypt schemes Dovecot verifies that a stolen users file does not give
# away cheaply: salted and slow (SHA-crypt with rounds, bcrypt, yescrypt,
# scrypt, Argon2). The key is the crypt id between the first two "$".
STRONG_CRYPT_IDS = {
    "6": "SHA512-CRYPT",
    "5": "SHA256-CRYPT",
    "2a": "BLF-CRYPT",
    "2b": "BLF-CRYPT",
    "2y": "BLF-CRYPT",
    "y": "yescrypt",
    "7": "scrypt",
    "argon2i": "ARGON2I",
    "argon2id": "ARGON2ID",
}
# Dovecot's {SCHEME} prefixes that may stand before such a hash.
CRYPT_PREFIXES = {"CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "ARGON2I", "ARGON2ID"}
WEAK_CRYPT_IDS = {
    "1": "MD5-crypt ($1$)",
    "apr1": "Apache MD5 ($apr1$)",
    "md5": "Sun MD5 ($md5$)",
    "3": "NT hash ($3$)",
    "sha1": "SHA1-crypt ($sha1$)",
}
_HASH_RE = re.compile(r"(?:\{(?P<prefix>[A-Za-z0-9.-]+)\})?(?P<crypt>\$(?P<id>[0-9a-z]+)\$[^:\s]+)?(?P<rest>.*)", re.S)
STRONG_SCHEMES = "SHA512-CRYPT ($6$), BLF-CRYPT ($2y$), yescrypt ($y$) or ARGON2ID"


def password_hash_problem(value):
    """Why value is not a password hash this service accepts, or None. The
    reason names the scheme, never the value."""
    if not isinstance(value, str) or not value:
        return f"password_hash must be a crypt hash such as {STRONG_SCHEMES}"
    found = _HASH_RE.fullmatch(value)
    prefix = (found["prefix"] or "").upper()
    if found["prefix"] and prefix not in CRYPT_PREFIXES:
        return f"password_hash uses the {prefix} scheme, which is clear text or a fast hash; use {STRONG_SCHEMES}"
    if not found["crypt"] or found["rest"]:
        return f"password_hash is not a $id$ crypt hash (clear text, DES crypt or a broken value); use {STRONG_SCHEMES}"
    return _crypt_id_problem(found["id"], prefix)


def _crypt_id_problem(crypt_id, prefix):
    if crypt_id in WEAK_CRYPT_IDS:
        return (
            f"password_hash uses {WEAK_CRYPT_IDS[crypt_id]}, which is too fast to resist guessing; use {STRONG_SCHEMES}"
        )
    if crypt_id not in STRONG_CRYPT_IDS:
        return f"password_hash has the unknown crypt id ${crypt_id}$; use {STRONG_SCHEMES}"
    if prefix not in {"", "CRYPT"} and STRONG_CRYPT_IDS[crypt_id] != prefix:
        return f"password_hash is marked {{{prefix}}} but is a {STRONG_CRYPT_IDS[crypt_id]} hash"
    return None


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
        hash_problem = password_hash_problem(account.get("password_hash"))
        if hash_problem:
            problems.append(f"{label}: {hash_problem}")
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
