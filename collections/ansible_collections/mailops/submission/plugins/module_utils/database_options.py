# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options that name the fleet database and how to reach it (documented in
the doc fragment ``mailops.submission.database``), apart from the connection
code (database_connection.py): a module that only declares them, as
sender_allowlist does for its file backends, does not import psycopg (70 ms).
"""

from __future__ import annotations

ARGUMENT_SPEC = {
    "database": {"type": "str", "required": True},
    "login_user": {"type": "str", "default": "postgres"},
    "login_unix_socket": {"type": "path", "default": "/var/run/postgresql"},
    "port": {"type": "int", "default": 5432},
    "session_role": {"type": "str"},
}
