# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an account in the inventory must hold, and the allowlist entries it gives.

An account is ``{address, password_hash, aliases, domains, external_senders}``.
Its address is its canonical SASL login (the rule of ``sender_address``);
its password is a slow, salted crypt hash, never clear text or a fast hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    normalize_login,
    normalize_sender,
)

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


@dataclass(frozen=True)
class AccountProblem:
    """One thing wrong with an account entry; nothing in it quotes a password or a hash.

    index: the entry's place in the list, from 0; address: as the entry gives
    it (None when the entry is not a mapping); login: its canonical login, when
    the address is one; kind: ``entry`` (not a mapping), ``address`` (not a
    login), ``password`` (one in clear text), ``password_hash`` (not a hash this
    service accepts) or ``listed`` (the login of an earlier entry, the one at
    index ``first``); reason: why, for ``address`` and ``password_hash``.
    """

    index: int
    address: object
    login: str | None
    kind: str
    reason: str = ""
    first: int | None = None


def account_entry_problems(accounts, states=False):
    """The one check of account entries, the inventory's (account_problems) and
    the fleet_accounts module's: their problems, entry by entry, in the order
    of the list, each caller reporting them its way.

    states: an entry may say ``state: absent`` (the module's entries), which
    needs no password hash."""
    first = {}
    for index, account in enumerate(accounts):
        if not isinstance(account, dict):
            yield AccountProblem(index, None, None, "entry")
            continue
        address = account.get("address")
        login = None
        try:
            login = normalize_login(address)
        except AddressError as exc:
            yield AccountProblem(index, address, None, "address", exc.reason)
        if "password" in account:
            yield AccountProblem(index, address, login, "password")
        if not (states and account.get("state", "present") == "absent"):
            hash_problem = password_hash_problem(account.get("password_hash"))
            if hash_problem:
                yield AccountProblem(index, address, login, "password_hash", hash_problem)
        if login in first:
            yield AccountProblem(index, address, login, "listed", first=first[login])
        elif login is not None:
            first[login] = index


_PROBLEM_LINES = {
    "entry": "{label}: not a mapping",
    "address": "{label}: the address is not a login: {reason}",
    "password": "{label}: a clear-text password; give its hash as password_hash",
    "password_hash": "{label}: {reason}",
}


def account_problems(accounts):
    """One line per problem, each naming the account by its address (or its
    position) and never quoting a password or a hash; a login listed more than
    once is one line, last."""
    problems, repeated = [], {}
    for problem in account_entry_problems(accounts):
        if problem.kind == "listed":
            repeated.setdefault(problem.login, [problem.first, 1])[1] += 1
            continue
        address = problem.address
        label = address if isinstance(address, str) and address else f"account #{problem.index + 1}"
        problems.append(_PROBLEM_LINES[problem.kind].format(label=label, reason=problem.reason))
    problems += [
        f"{login}: listed {count} times" for login, (_, count) in sorted(repeated.items(), key=lambda item: item[1][0])
    ]
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


def dovecot_password(password_hash):
    """The password field Dovecot reads: the hash with its {SCHEME}, {CRYPT} when it names none."""
    return password_hash if password_hash.startswith("{") else "{CRYPT}" + password_hash


def users_file_lines(accounts, primary_domain):
    """The passwd-file lines of submission_sasl's users file: ``login:password::::::user=canonical``.

    Dovecot turns '%' into '@' and lower-cases a login before it looks it up;
    an address of the primary domain also has a line for its bare local part.
    The user= field makes Dovecot answer with the canonical address, which
    Postfix logs as sasl_username.
    """
    lines = []
    for account in sorted(accounts, key=lambda account: account["address"].lower()):
        address = account["address"].lower()
        password = dovecot_password(account["password_hash"])
        local, domain = address.rsplit("@", 1)
        keys = [address] + ([local] if domain == primary_domain.lower() else [])
        lines.extend(f"{key}:{password}::::::user={address}" for key in keys)
    return lines


def credential_changes(users_file_text, accounts):
    """The canonical logins of a users file (its text as it stands) whose password
    the accounts change or that they no longer hold, sorted: their web sessions
    must end. A login the file does not hold yet is not a change."""
    before = {}
    for line in (users_file_text or "").splitlines():
        fields = line.split(":")
        if line.startswith("#") or len(fields) < 3 or fields[-1] != f"user={fields[0]}":
            continue
        before[fields[0]] = fields[1]
    after = {account["address"].lower(): dovecot_password(account["password_hash"]) for account in accounts}
    return sorted(login for login, password in before.items() if after.get(login) != password)


def _key(value):
    """value as an allowlist key, or None when it is not one (account_problems names those)."""
    try:
        return normalize_sender(value)
    except AddressError:
        return None


def _domain_of(key):
    return key.rsplit("@", 1)[-1]


def identity_problems(accounts, primary_domain, shared_senders=(), validated=()):
    """One line per broken identity invariant, each naming the account and the key.

    - aliases and external_senders are addresses, never @domain keys (one line
      would let a login send as anyone at gmail.com);
    - an owned domain is never the primary domain (every user's addresses) and
      has one owner;
    - an address (account or alias) has one owner, unless shared_senders lists it;
    - an external or validated address is never inside the provider's own or
      hosted domains: it would take an address from the domain's owner, as
      Postfix's full-address key wins over the @domain key.
    validated: extra {sender, login} pairs (submission_allowlist_validated).
    """
    primary = primary_domain.lower()
    hosted = set(hosted_domains([a for a in accounts if isinstance(a, dict) and a.get("address")], primary))
    shared = {_key(sender) for sender in shared_senders}
    problems, owners, domain_owners = [], {}, {}
    for account in accounts:
        if not isinstance(account, dict) or not isinstance(account.get("address"), str):
            continue
        label = account["address"]
        for field in ("aliases", "external_senders"):
            for sender in account.get(field, []):
                if isinstance(sender, str) and sender.strip().startswith("@"):
                    problems.append(f"{label}: {field} has {sender}, a whole domain; list addresses")
        for sender in [account["address"], *account.get("aliases", [])]:
            key = _key(sender)
            if key:
                owners.setdefault(key, []).append(label)
        for domain in account.get("domains", []):
            if str(domain).lower() == primary:
                problems.append(f"{label}: domains has {domain}, the primary domain (every user's addresses)")
            else:
                domain_owners.setdefault(str(domain).lower(), []).append(label)
        problems += _outside_hosted(label, "external_senders", account.get("external_senders", []), hosted)
    for pair in (p for p in validated if p.get("state", "present") == "present"):
        problems += _outside_hosted(pair.get("login", "?"), "submission_allowlist_validated", [pair["sender"]], hosted)
    problems += [
        f"{key}: claimed by {', '.join(labels)}; one owner, or list it in submission_shared_senders"
        for key, labels in owners.items()
        if len(labels) > 1 and key not in shared
    ]
    problems += [
        f"{domain}: in the domains of {', '.join(labels)}; a domain has one owner"
        for domain, labels in domain_owners.items()
        if len(labels) > 1
    ]
    return problems


def _outside_hosted(label, field, senders, hosted):
    return [
        f"{label}: {field} has {sender}, inside the provider's domain {_domain_of(key)}; "
        "such an address belongs to an account (address, alias or domain), never to a validation"
        for sender in senders
        if (key := _key(sender)) and not key.startswith("@") and _domain_of(key) in hosted
    ]
