# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the collection's modules reach the fleet database: psycopg 3 over the
database host's local socket, as a role that Ansible maps root to (peer
authentication), one transaction a run.

The modules run on the database host; no password travels or is stored.
"""

from __future__ import annotations

import contextlib
import traceback

try:
    import psycopg
except ImportError:
    psycopg = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None


class DatabaseError(Exception):
    pass


def connect(params):
    """A psycopg connection in a transaction (not autocommit), as session_role when given."""
    try:
        connection = psycopg.connect(
            host=params["login_unix_socket"],
            port=params["port"],
            dbname=params["database"],
            user=params["login_user"],
            application_name="ansible mailops.submission",
        )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to database {params['database']!r}: {exc}".strip()) from None
    if params["session_role"]:
        try:
            with connection.cursor() as cursor:
                cursor.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(params["session_role"])))
        except psycopg.Error as exc:
            connection.close()
            raise DatabaseError(f"cannot SET ROLE {params['session_role']!r}: {exc}".strip()) from None
    return connection


class TransactionOutcome:
    """Set commit to true inside the block to commit; otherwise it is rolled back."""

    commit = False


@contextlib.contextmanager
def transaction(connection, target):
    """(cursor, outcome) in one transaction on connection, which is closed after:
    committed when the block sets outcome.commit, rolled back otherwise (check
    mode, nothing to change); a database error rolls back and raises
    DatabaseError("<target> left unchanged: ..."). The driver's message can
    quote a row: callers' rows name logins and addresses, never secrets."""
    outcome = TransactionOutcome()
    try:
        with connection.cursor() as cursor:
            yield cursor, outcome
        if outcome.commit:
            connection.commit()
        else:
            connection.rollback()
    except psycopg.Error as exc:
        with contextlib.suppress(psycopg.Error):  # a lost connection cannot roll back
            connection.rollback()
        raise DatabaseError(f"{target} left unchanged: {str(exc).strip()}") from None
    finally:
        connection.close()


def schema_versions(cursor):
    """The migration versions applied, or an empty set before the first."""
    cursor.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return set()
    cursor.execute("SELECT version FROM schema_version")
    return {row[0] for row in cursor.fetchall()}
