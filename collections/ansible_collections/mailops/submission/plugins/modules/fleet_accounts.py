#!/usr/bin/python
# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleet_accounts
short_description: Manage the submission accounts, their aliases and owned domains in the fleet database
version_added: 0.4.0
description:
  - Manages the rows of C(accounts), C(account_aliases) and C(account_domains) in the fleet's PostgreSQL
    database (schema of M(mailops.submission.store_schema)), from which Dovecot checks passwords and Postfix and
    the header-From milter learn who may send as which address, on every MTA of the fleet at once.
  - Every entry is checked before the database is read. The address is a login (C(user@domain), lower-cased,
    IDN domains to A-labels), the hash is a strong crypt hash (SHA512-CRYPT, BLF-CRYPT, yescrypt, Argon2; never
    clear text, MD5 or DES), aliases are addresses and domains are domains. A bad entry fails the task, naming
    the entry and the value (never a hash), and nothing is written.
  - All changes are one transaction; check mode and a failure roll it back.
  - Removing an account removes its aliases and domains; its validated senders are the
    M(mailops.submission.sender_allowlist) module's (its O(mailops.submission.sender_allowlist#module:logins)
    option).
author:
  - smtp-submission developers
attributes:
  check_mode:
    support: full
    description: Computes the changes in the transaction, then rolls it back.
  diff_mode:
    support: full
    description: The accounts changed, before and after, with C(password set) in place of any hash.
  platform:
    platforms: posix
requirements:
  - psycopg 3 (Debian's C(python3-psycopg)) on the database host.
options:
  accounts:
    description: The accounts.
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description: The account's login, C(user@domain).
        type: str
        required: true
      password_hash:
        description: Its password's crypt hash, with or without Dovecot's C({SCHEME}) prefix. Required when present.
        type: str
      aliases:
        description: Other addresses the account sends as.
        type: list
        elements: str
        default: []
      domains:
        description: Domains the account owns (it sends as any address there). A domain has one owner.
        type: list
        elements: str
        default: []
      state:
        description: Whether the account exists.
        type: str
        choices: [present, absent]
        default: present
  exclusive:
    description: If C(true), every account not listed is removed.
    type: bool
    default: false
  database:
    description: The fleet database whose accounts the module manages (its name).
    type: str
    required: true
extends_documentation_fragment:
  - mailops.submission.database
notes:
  - O(accounts[].password_hash) is C(no_log); the task's results and diff name logins, never hashes.
"""

EXAMPLES = r"""
- name: The accounts are exactly the inventory's
  mailops.submission.fleet_accounts:
    database: submission
    session_role: submission_owner
    accounts:
      - address: alice@runbox.com
        password_hash: "{{ vault_alice_hash }}"
        aliases: [alice.smith@runbox.com]
      - address: bob@hosted.example
        password_hash: "{{ vault_bob_hash }}"
        domains: [hosted.example]
    exclusive: true
"""

RETURN = r"""
added:
  description: Logins added.
  returned: always
  type: list
  elements: str
  sample: [alice@runbox.com]
removed:
  description: Logins removed.
  returned: always
  type: list
  elements: str
  sample: []
updated:
  description: Logins whose hash, aliases or domains changed.
  returned: always
  type: list
  elements: str
  sample: []
accounts:
  description: Number of accounts after the run.
  returned: always
  type: int
  sample: 2
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.mailops.submission.plugins.module_utils.database_connection import (
    PSYCOPG_IMPORT_ERROR,
    DatabaseError,
    connect,
    psycopg,
    transaction,
)
from ansible_collections.mailops.submission.plugins.module_utils.database_options import ARGUMENT_SPEC
from ansible_collections.mailops.submission.plugins.module_utils.fleet_accounts import (
    Account,
    AccountError,
    normalize_accounts,
    plan_accounts,
)


def read_accounts(cursor):
    """{login: Account} as the database holds them, read under a lock that writers wait for."""
    cursor.execute("LOCK TABLE accounts, account_aliases, account_domains IN SHARE ROW EXCLUSIVE MODE")
    aliases, domains = {}, {}
    cursor.execute("SELECT login, address FROM account_aliases")
    for login, address in cursor.fetchall():
        aliases.setdefault(login, set()).add(address)
    cursor.execute("SELECT login, domain FROM account_domains")
    for login, domain in cursor.fetchall():
        domains.setdefault(login, set()).add(domain)
    cursor.execute("SELECT login, password_hash FROM accounts")
    return {
        login: Account(login, password_hash, frozenset(aliases.get(login, ())), frozenset(domains.get(login, ())))
        for login, password_hash in cursor.fetchall()
    }


def write_plan(cursor, plan):
    """The plan's rows, inside the caller's transaction; deletes first, so a domain can change owners."""
    cursor.execute("DELETE FROM account_aliases WHERE login = ANY(%s)", (plan.updated,))
    cursor.execute("DELETE FROM account_domains WHERE login = ANY(%s)", (plan.updated,))
    cursor.execute("DELETE FROM accounts WHERE login = ANY(%s)", (plan.removed,))
    for login in plan.added + plan.updated:
        account = plan.desired[login]
        cursor.execute(
            "INSERT INTO accounts (login, password_hash) VALUES (%s, %s)"
            " ON CONFLICT (login) DO UPDATE SET password_hash = excluded.password_hash",
            (login, account.password_hash),
        )
        cursor.executemany(
            "INSERT INTO account_aliases (address, login) VALUES (%s, %s)",
            [(alias, login) for alias in sorted(account.aliases)],
        )
        cursor.executemany(
            "INSERT INTO account_domains (domain, login) VALUES (%s, %s)",
            [(domain, login) for domain in sorted(account.domains)],
        )


def run(module):
    params = module.params
    entries = normalize_accounts(params["accounts"])
    result = {}
    # The driver's message can quote a row; it names a login or a domain, never a hash.
    with transaction(connect(params), f"database {params['database']}") as (cursor, outcome):
        plan = plan_accounts(read_accounts(cursor), entries, params["exclusive"])
        result.update(
            changed=plan.changed,
            added=plan.added,
            removed=plan.removed,
            updated=plan.updated,
            accounts=len(plan.desired),
        )
        if module._diff and plan.changed:
            before, after = plan.diff()
            result["diff"] = {"before_header": "accounts", "after_header": "accounts"}
            result["diff"].update(before=before, after=after)
        if plan.changed and not module.check_mode:
            write_plan(cursor, plan)
            outcome.commit = True
    return result


def main():
    spec = dict(ARGUMENT_SPEC)
    spec.update(
        accounts={
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": {
                "address": {"type": "str", "required": True},
                "password_hash": {"type": "str", "no_log": True},
                "aliases": {"type": "list", "elements": "str", "default": []},
                "domains": {"type": "list", "elements": "str", "default": []},
                "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            },
        },
        exclusive={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if psycopg is None:
        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"), exception=PSYCOPG_IMPORT_ERROR)
    result = {"changed": False, "added": [], "removed": [], "updated": [], "accounts": 0}
    error = None
    try:
        result.update(run(module))
    except (AccountError, DatabaseError) as exc:
        error = str(exc)
    if error is not None:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
