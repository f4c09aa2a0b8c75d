#!/usr/bin/python
# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: store_schema
short_description: Bring the fleet database's schema up to date
version_added: 0.4.0
description:
  - Applies, in version order, the migrations of the validation store (the validation service's tables, unchanged)
    and of the fleet (accounts, their aliases and domains, and the C(sender_logins) view that Postfix and the
    header-From milter read) that the database does not have yet.
  - Each migration is one transaction with its C(schema_version) row; a failing migration leaves the database at
    the last one that succeeded, and the task fails naming the version and the statement.
  - The objects belong to O(session_role) when it is given, so that Ansible's role owns the schema and the
    services' roles get only the grants the calling role gives them.
author:
  - smtp-submission developers
attributes:
  check_mode:
    support: full
    description: Reports the versions that would be applied; each is applied and rolled back.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - psycopg 3 (Debian's C(python3-psycopg)) on the database host.
options:
  database:
    description: The database to create or migrate the schema in (its name).
    type: str
    required: true
extends_documentation_fragment:
  - mailops.submission.database
"""

EXAMPLES = r"""
- name: Bring the submission database's schema up to date, owned by submission_owner
  mailops.submission.store_schema:
    database: submission
    session_role: submission_owner
"""

RETURN = r"""
applied:
  description: The versions applied by this run (in check mode, those that would be).
  returned: always
  type: list
  elements: int
  sample: [1, 100]
version:
  description: The highest version the database has after the run.
  returned: always
  type: int
  sample: 100
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.mailops.submission.plugins.module_utils.database_connection import (
    PSYCOPG_IMPORT_ERROR,
    DatabaseError,
    connect,
    psycopg,
    schema_versions,
)
from ansible_collections.mailops.submission.plugins.module_utils.database_options import ARGUMENT_SPEC
from ansible_collections.mailops.submission.plugins.module_utils.fleet_schema import MIGRATIONS as FLEET
from ansible_collections.mailops.submission.plugins.module_utils.validated_store import MIGRATIONS as STORE


def apply_migrations(connection, check_mode):
    """The versions applied (or, in check mode, that would be); each migration commits on its own.
    Check mode tries the first missing one and rolls everything back, schema_version included."""
    applied = []
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
        have = schema_versions(cursor)
        if check_mode:
            # Nothing stays: the table and the first missing migration are tried, then rolled back.
            applied = [version for version, _ in sorted(STORE + FLEET) if version not in have]
            if applied:
                version, statements = next(m for m in sorted(STORE + FLEET) if m[0] == applied[0])
                _run(cursor, connection, version, statements)
            connection.rollback()
            return applied, max(have | set(applied) or {0})
        connection.commit()
        for version, statements in sorted(STORE + FLEET, key=lambda migration: migration[0]):
            if version in have:
                continue
            _run(cursor, connection, version, statements)
            cursor.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            applied.append(version)
            connection.commit()
    return applied, max(have | set(applied) or {0})


def _run(cursor, connection, version, statements):
    for statement in statements:
        try:
            cursor.execute(statement)
        except psycopg.Error as exc:
            connection.rollback()
            first_line = statement.strip().splitlines()[0]
            raise DatabaseError(f"migration {version} failed at {first_line!r}: {exc}".strip()) from None


def main():
    module = AnsibleModule(argument_spec=dict(ARGUMENT_SPEC), supports_check_mode=True)
    if psycopg is None:
        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"), exception=PSYCOPG_IMPORT_ERROR)
    result = {"changed": False, "applied": [], "version": 0}
    error = None
    try:
        connection = connect(module.params)
        try:
            result["applied"], result["version"] = apply_migrations(connection, module.check_mode)
        finally:
            connection.close()
    except DatabaseError as exc:
        error = str(exc)
    result["changed"] = bool(result["applied"])
    if error is not None:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
