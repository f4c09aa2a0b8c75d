#!/usr/bin/python
# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sender_allowlist
short_description: Manage a Postfix sender allowlist table (sender address to SASL logins)
version_added: 0.1.0
description:
  - Manages one table of sender addresses and the SASL logins allowed to use them, in the form
    Postfix's C(smtpd_sender_login_maps) reads, for C(reject_authenticated_sender_login_mismatch).
  - A key is C(local@domain) (that address; with C(recipient_delimiter = +) also C(local+tag@domain)) or
    C(@domain) (every address at the domain). A key may belong to several logins.
  - Keys and logins are validated and normalised first (lower case, IDN domains to their A-label, RFC 5321
    length limits). Whitespace, commas, control characters, C(%), C(!), C(:), source routes, quoted local
    parts, empty labels and trailing dots are refused, and a domain is a DNS name by the collection's one rule
    (the test C(mailops.submission.dns_name); at most 253 octets, the last label not all digits). A bad entry
    fails the task, names the entry, and nothing is written.
  - When the resulting table equals the current one, nothing is written and no map is rebuilt.
    Otherwise the source file and the compiled map are replaced by renaming complete new files over
    them, so that Postfix never reads a half-built map and a failure midway leaves the previous table
    in force. Small changes to C(lmdb) and C(hash) maps are applied with C(postmap -i)/C(postmap -d) to a
    copy of the compiled map instead of a full rebuild.
  - Runs against the same table serialise on a lock, so concurrent runs do not lose each other's entries.
  - Postfix daemons notice a replaced map by themselves; no reload is needed.
  - With O(store) instead of O(path), it manages the same pairs in the validation service's SQLite store
    (role C(submission_validation)), where Postfix sees a change at the next lookup. Pairs it adds are marked
    as the inventory's. It removes a pair that a user validated by link only when an absent entry names it;
    O(exclusive) replaces the inventory's pairs and leaves the users' alone. All changes are one transaction;
    check mode rolls it back.
  - With O(database), it manages the same pairs, with the same rules, in the fleet's PostgreSQL database (role
    C(submission_database)), where every MTA of the fleet sees a change at its next lookup. It runs on the
    database host; pairs to add are loaded with C(COPY).
author:
  - smtp-submission developers
attributes:
  check_mode:
    support: full
    description: Computes the changes, counts and diff without writing anything.
  diff_mode:
    support: full
    description: The diff lists the pairs removed (before) and added (after), at most 1000 of each.
  platform:
    platforms: posix
requirements:
  - Postfix's C(postmap) on the target, with support for the chosen map type (Debian packages
    C(postfix-lmdb), C(postfix-cdb)).
  - With O(database), psycopg 3 (Debian's C(python3-psycopg)) on the database host.
  - For an internationalised domain, the C(idna) package (Debian's C(python3-idna)) on the target (IDNA 2008 / UTS 46).
options:
  path:
    description:
      - The table's source file. The compiled map is C(path) plus C(.lmdb), C(.db) or C(.cdb).
      - Its directory must exist.
      - Exactly one of O(path), O(store) and O(database) is required.
    type: path
  store:
    description:
      - The validation service's SQLite store, instead of a table file. It must exist with its schema (the
        service creates it). Keys are full addresses there; C(@domain) keys are refused.
      - O(type), O(incremental_limit), O(postfix_config_dir) and the file attributes do not apply.
    type: path
    version_added: 0.2.0
  database:
    description:
      - The fleet database's name, instead of a table file or a SQLite store; the module connects over the
        local socket (see O(login_user)). Its schema must be in place (M(mailops.submission.store_schema)).
      - Keys are full addresses there; C(@domain) keys are the accounts' (M(mailops.submission.fleet_accounts)).
      - O(login_user), O(login_unix_socket), O(port) and O(session_role) apply with it only.
    type: str
    version_added: 0.4.0
  entries:
    description:
      - Pairs to add (C(state=present)) or remove (C(state=absent)).
      - An absent entry without C(login) removes the sender key with all its logins.
    type: list
    elements: dict
    default: []
    suboptions:
      sender:
        description: A sender key, C(local@domain) or C(@domain).
        type: str
        required: true
      login:
        description:
          - The canonical SASL login (C(user@domain)) allowed to send as C(sender).
          - Required when O(entries[].state=present).
        type: str
      state:
        description: Whether the pair should be in the table.
        type: str
        choices: [present, absent]
        default: present
  src:
    description:
      - A file on the target with one C(sender login) pair a line, for bulk loads. Blank lines and lines
        starting with C(#) are skipped. Its pairs are added like present entries.
    type: path
  exclusive:
    description:
      - If C(true), the table holds exactly the present entries and the pairs of C(src); every other pair
        is removed.
      - With O(store), the pairs users validated by link stay; only the inventory's are replaced.
    type: bool
    default: false
  logins:
    description:
      - With O(store) or O(database) only, the logins that exist (every account's). Pairs of any other login
        are removed, the ones users validated by link included, so that a removed account's addresses go with
        it and a login reused later starts with none. A present entry for another login is an error.
      - Unset, no pair is removed for its login.
    type: list
    elements: str
    version_added: 0.3.0
  type:
    description: The Postfix lookup table type of the compiled map.
    type: str
    choices: [lmdb, hash, cdb]
    default: lmdb
  postfix_config_dir:
    description:
      - Postfix configuration directory that C(postmap) reads (C(postmap -c)). Default is Postfix's own.
    type: path
  incremental_limit:
    description:
      - Largest number of changed keys applied incrementally to a copy of an C(lmdb) or C(hash) map; larger
        changes rebuild the map from the source file.
    type: int
    default: 10000
extends_documentation_fragment:
  - ansible.builtin.files
  - mailops.submission.database
notes:
  - The source file starts with a comment that records a digest of the input and of the table, so that
    a repeated run with the same input recognises an unchanged table without parsing it. Do not edit the
    file by hand; a hand edit is noticed (the digest no longer matches) and the next run rewrites it.
  - Postfix tries, for a sender, the full address, then the address without its C(+tag), then C(@domain),
    and uses the logins of the first key that exists.
seealso:
  - name: Postfix smtpd_sender_login_maps
    description: How Postfix uses this table.
    link: https://www.postfix.org/postconf.5.html#smtpd_sender_login_maps
"""

EXAMPLES = r"""
- name: Allow alice to send as her alias, and bob as anything at his domain
  mailops.submission.sender_allowlist:
    path: /etc/postfix/submission/sender_logins_accounts
    entries:
      - sender: alice.smith@runbox.com
        login: alice@runbox.com
      - sender: "@hosted.example"
        login: bob@hosted.example

- name: Remove a validated external address from every login
  mailops.submission.sender_allowlist:
    path: /etc/postfix/submission/sender_logins_validated
    entries:
      - sender: alice.ext@gmail.example
        state: absent

- name: >-
    Seed the validation service's store with the inventory's external senders, keeping what users validated,
    except the pairs of a removed account
  mailops.submission.sender_allowlist:
    store: /var/lib/sender-validation/senders.sqlite
    entries:
      - sender: alice.ext@gmail.example
        login: alice@runbox.com
    exclusive: true
    logins: [alice@runbox.com, bob@hosted.example]

- name: On the fleet's database host, put the inventory's external senders in the fleet database
  mailops.submission.sender_allowlist:
    database: submission
    session_role: submission_owner
    entries:
      - sender: alice.ext@gmail.example
        login: alice@runbox.com
    exclusive: true
    logins: [alice@runbox.com, bob@hosted.example]

- name: Load a whole table from a file on the target, dropping every pair not in it
  mailops.submission.sender_allowlist:
    path: /etc/postfix/submission/sender_logins_validated
    src: /var/lib/validation/validated-senders.txt
    exclusive: true
    type: lmdb
    owner: root
    group: root
    mode: "0644"
"""

RETURN = r"""
added:
  description: Number of (sender, login) pairs added.
  returned: always
  type: int
  sample: 1
removed:
  description: Number of (sender, login) pairs removed.
  returned: always
  type: int
  sample: 0
pairs:
  description: Number of (sender, login) pairs in the table after the run.
  returned: always
  type: int
  sample: 3
keys:
  description: Number of sender keys in the table after the run.
  returned: always
  type: int
  sample: 3
map:
  description: Path of the compiled map.
  returned: when O(path) is given
  type: str
  sample: /etc/postfix/submission/sender_logins_accounts.lmdb
rebuild:
  description:
    - How the compiled map was updated. C(none); C(in-place) (one key changed, one postmap transaction on the live
      map); C(incremental) (a few keys, applied to a copy that replaces the map); C(full) (rebuilt).
  returned: always
  type: str
  sample: in-place
"""

import gc

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.common import (
    MissingLibrary,
    Request,
)
from ansible_collections.mailops.submission.plugins.module_utils.database_options import (
    ARGUMENT_SPEC as DATABASE_ARGUMENT_SPEC,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import TableError
from ansible_collections.mailops.submission.plugins.module_utils.table_source import MAP_SUFFIX


def backend_class(kind):
    """The backend of the option given (path, store or database).

    Only the selected backend's code is imported: a run on a table file loads no
    database code (about 10 ms of a no-op's 0.15 s: benchmarks/README.md).
    """
    if kind == "store":
        from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.sqlite_store import (  # noqa: PLC0415
            SqliteStoreBackend,
        )

        return SqliteStoreBackend
    if kind == "database":
        from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.postgresql import (  # noqa: PLC0415
            DatabaseBackend,
        )

        return DatabaseBackend
    from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.table_file import (  # noqa: PLC0415
        TableFileBackend,
    )

    return TableFileBackend


def main():
    # A short-lived process that builds millions of objects and frees them at exit:
    # the cyclic garbage collector would only scan them over and over.
    gc.disable()
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "store": {"type": "path"},
            "database": {"type": "str"},
            "login_user": DATABASE_ARGUMENT_SPEC["login_user"],
            "login_unix_socket": DATABASE_ARGUMENT_SPEC["login_unix_socket"],
            "port": DATABASE_ARGUMENT_SPEC["port"],
            "session_role": DATABASE_ARGUMENT_SPEC["session_role"],
            "entries": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "sender": {"type": "str", "required": True},
                    "login": {"type": "str"},
                    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
                },
                "required_if": [("state", "present", ["login"])],
            },
            "src": {"type": "path"},
            "exclusive": {"type": "bool", "default": False},
            "logins": {"type": "list", "elements": "str"},
            "type": {"type": "str", "choices": list(MAP_SUFFIX), "default": "lmdb"},
            "postfix_config_dir": {"type": "path"},
            "incremental_limit": {"type": "int", "default": 10000},
        },
        add_file_common_args=True,
        supports_check_mode=True,
        required_one_of=[("path", "store", "database")],
        mutually_exclusive=[("path", "store", "database")],
    )
    # required_one_of counts an empty value as given: the option given selects the backend, then is checked.
    kind = next((key for key in ("store", "database", "path") if module.params[key] is not None), "path")
    backend = backend_class(kind)(module, Request.from_module(module))
    result = dict({kind: module.params[kind]}, changed=False, added=0, removed=0, rebuild="none")
    error = None
    try:
        if not module.params[kind]:
            raise TableError(f"{kind} is empty: name the {'database' if kind == 'database' else 'file'} to manage")
        with backend.session():
            backend.plan()
            if not module.check_mode:
                backend.apply()
    except MissingLibrary as exc:
        # Ansible's own message for a missing library, and the import's traceback; nothing was read.
        result, error = {"exception": exc.traceback}, exc.msg
    except TableError as exc:
        error = str(exc)
    result.update(backend.result())
    if error is not None:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
