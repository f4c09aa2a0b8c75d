# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The validated-senders store: its schema, and the lookup Postfix makes in it.

One definition for the validation service (which creates and writes the store)
and the roles (which point Postfix at it). Plain SQL that SQLite and
PostgreSQL both hold unchanged: text, integers (Unix seconds), primary keys.

Postfix asks with the full sender, then without its +tag, then @domain; the
first key that answers decides. The answer is the logins, comma-separated, as
the lmdb tables give them.

Pure Python, no Ansible import.
"""

from __future__ import annotations

# (version, statements). Append; never edit one that has shipped.
MIGRATIONS = [
    (
        1,
        [
            # Who may send as which external address, and who said so: 'user'
            # (confirmed by link) or 'inventory' (seeded by Ansible).
            """CREATE TABLE validated_senders (
                sender TEXT NOT NULL,
                login TEXT NOT NULL,
                source TEXT NOT NULL CHECK (source IN ('user', 'inventory')),
                validated_at BIGINT NOT NULL,
                PRIMARY KEY (sender, login)
            )""",
            # One open request per (sender, login): a new one replaces it.
            """CREATE TABLE validation_requests (
                sender TEXT NOT NULL,
                login TEXT NOT NULL,
                token_sha256 TEXT NOT NULL UNIQUE,
                client_address TEXT NOT NULL,
                requested_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                PRIMARY KEY (sender, login)
            )""",
            # Every request made, mailed or not, for the abuse limits.
            """CREATE TABLE request_log (
                sender TEXT NOT NULL,
                login TEXT NOT NULL,
                requested_at BIGINT NOT NULL
            )""",
            "CREATE INDEX request_log_login ON request_log (login, requested_at)",
            "CREATE INDEX request_log_sender ON request_log (sender, requested_at)",
            # "This was not me": that login may not ask for that address until then.
            """CREATE TABLE blocked_requests (
                sender TEXT NOT NULL,
                login TEXT NOT NULL,
                blocked_until BIGINT NOT NULL,
                PRIMARY KEY (sender, login)
            )""",
        ],
    ),
    (
        2,
        [
            # The web pages' logins: a session lives here, so logging out or
            # `python3 -m sender_validation end-sessions LOGIN` ends it for
            # every copy of its cookie. The cookie's id only as its SHA-256.
            """CREATE TABLE web_sessions (
                id_sha256 TEXT PRIMARY KEY,
                login TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            )""",
            "CREATE INDEX web_sessions_login ON web_sessions (login)",
            # The abuse limits count per mailbox (sender_address.mailbox):
            # victim+1@ and v.ictim@gmail.com are victim@gmail.com's.
            "ALTER TABLE request_log ADD COLUMN mailbox TEXT",
            "UPDATE request_log SET mailbox = sender",
            "CREATE INDEX request_log_mailbox ON request_log (mailbox, requested_at)",
            "ALTER TABLE blocked_requests ADD COLUMN mailbox TEXT",
            "UPDATE blocked_requests SET mailbox = sender",
            "CREATE INDEX blocked_requests_mailbox ON blocked_requests (mailbox, login)",
        ],
    ),
]

# The logins that may send as a sender, for the store's socketmap server
# (sender_validation.sender_map); a DB-API query with one parameter.
LOGINS_QUERY = "SELECT login FROM validated_senders WHERE sender = ? ORDER BY login"

QUERIES = {
    "sqlite": "SELECT group_concat(login, ',') FROM validated_senders WHERE sender = '%s'",
    "pgsql": "SELECT string_agg(login, ',' ORDER BY login) FROM validated_senders WHERE sender = '%s'",
}


def store_query(backend):
    """The query of a Postfix sqlite_table(5) or pgsql_table(5) file for the store."""
    return QUERIES[backend]
