"""The store of validated senders and of pending confirmation requests.

Postfix reads ``validated_senders`` at each lookup (through ``sender_map``, the
socketmap daemon, on one host), so a confirmation or a removal counts at the
next MAIL FROM, with no rebuild and no reload. The schema is plain SQL that SQLite
and PostgreSQL both hold unchanged: text, integers (Unix seconds), primary
keys. Addresses are stored canonical (lower case, A-label domains, the rule of
``sender_address``); a token or a session id only as its SHA-256. The abuse
limits count per mailbox (``sender_address.mailbox``: no +tag, Gmail's dots
folded), so the variants of one address share one count and one block.

Each thread has its own connection (gunicorn's threaded workers): no
connection is shared across threads.

The schema and its migrations are the collection's (``validated_store``),
which the Ansible side reads too. They are applied in order, each in one
transaction, and ``schema_version`` records the last one applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import sqlite3
import threading

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import mailbox
from ansible_collections.mailops.submission.plugins.module_utils.validated_store import MIGRATIONS

TOKEN_BYTES = 32


def token_digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Request:
    sender: str
    login: str
    client_address: str
    requested_at: int
    expires_at: int


class Store:
    """The SQLite store. Each method is one transaction."""

    def __init__(self, path, timeout=5.0):
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        self._connections = []
        self._connections_lock = threading.Lock()

    @property
    def db(self):
        """This thread's connection, opened at its first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _connect(self):
        # Used by its thread only; check_same_thread=False lets close() close it from another.
        connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        # WAL: the map Postfix asks reads while the web app writes.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def close(self):
        """Close every thread's connection."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def lock_requests(self):
        """Inside a transaction: hold the right to open requests until it ends,
        so that the limits' counts and the new request are one step. SQLite's
        BEGIN IMMEDIATE already holds the one write lock."""

    def transaction(self):
        return _Transaction(self.db)

    def schema_version(self):
        exists = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if exists.fetchone() is None:
            return 0
        row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return row[0] or 0

    def migrate(self):
        """Apply the migrations not yet applied; return the versions applied."""
        applied = []
        with self.transaction():
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
        current = self.schema_version()
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction():
                for statement in statements:
                    self.db.execute(statement)
                self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            applied.append(version)
        return applied

    # Requests and confirmations

    def request(self, sender, login, client_address, now, ttl):
        """Open a request for login to send as sender; return its token (to mail).

        A request already open for the same sender and login is replaced, so its
        link stops working.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self.transaction():
            self._drop_request(sender, login)
            self.db.execute(
                "INSERT INTO validation_requests"
                " (sender, login, token_sha256, client_address, requested_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (sender, login, token_digest(token), client_address, now, now + ttl),
            )
        return token

    def _drop_request(self, sender, login):
        """Remove the open request of sender for login; how many rows went (0 or 1)."""
        return self.db.execute(
            "DELETE FROM validation_requests WHERE sender = ? AND login = ?", (sender, login)
        ).rowcount

    def log_request(self, sender, login, now):
        with self.transaction():
            self.db.execute(
                "INSERT INTO request_log (sender, login, requested_at, mailbox) VALUES (?, ?, ?, ?)",
                (sender, login, now, mailbox(sender)),
            )

    def find_request(self, token):
        """The open request of a token, or None (unknown, used or replaced)."""
        row = self.db.execute(
            "SELECT sender, login, client_address, requested_at, expires_at"
            " FROM validation_requests WHERE token_sha256 = ?",
            (token_digest(token),),
        ).fetchone()
        return Request(*row) if row else None

    def confirm(self, token, login, now):
        """Validate the request of token for login; the validated sender, or None.

        None when the token is unknown, used, replaced, expired, or not login's.
        """
        with self.transaction():
            request = self.find_request(token)
            if request is None or request.login != login or request.expires_at <= now:
                return None
            self._drop_request(request.sender, request.login)
            self.db.execute(
                "INSERT INTO validated_senders (sender, login, source, validated_at) VALUES (?, ?, 'user', ?)"
                " ON CONFLICT (sender, login) DO NOTHING",
                (request.sender, request.login, now),
            )
        return request.sender

    def refuse(self, token, now, block_for):
        """'This was not me': cancel the request and block its login from asking
        for that sender again for block_for seconds. The cancelled Request, or None."""
        with self.transaction():
            request = self.find_request(token)
            if request is None:
                return None
            self._drop_request(request.sender, request.login)
            self.db.execute(
                "INSERT INTO blocked_requests (sender, login, blocked_until, mailbox) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (sender, login) DO UPDATE SET blocked_until = excluded.blocked_until",
                (request.sender, request.login, now + block_for, mailbox(request.sender)),
            )
        return request

    # What a login sees and changes

    def senders(self, login, now):
        """(validated senders, pending senders) of a login, each sorted."""
        validated = [
            r[0]
            for r in self.db.execute("SELECT sender FROM validated_senders WHERE login = ? ORDER BY sender", (login,))
        ]
        pending = [
            r[0]
            for r in self.db.execute(
                "SELECT sender FROM validation_requests WHERE login = ? AND expires_at > ? ORDER BY sender",
                (login, now),
            )
        ]
        return validated, pending

    def provided(self, login):
        """The validated senders of a login that the provider set (the inventory's), sorted."""
        rows = self.db.execute(
            "SELECT sender FROM validated_senders WHERE login = ? AND source = 'inventory' ORDER BY sender", (login,)
        )
        return [r[0] for r in rows]

    def remove(self, sender, login):
        """Remove a sender the login validated, or its pending request; whether anything went.

        What the provider set stays: Ansible's inventory owns it.
        """
        with self.transaction():
            gone = self.db.execute(
                "DELETE FROM validated_senders WHERE sender = ? AND login = ? AND source = 'user'", (sender, login)
            ).rowcount
            gone += self._drop_request(sender, login)
        return gone > 0

    # The abuse limits' inputs

    def blocked(self, sender, login, now):
        """Whether the mailbox of sender told login 'not me' (under any of its variants)."""
        row = self.db.execute(
            "SELECT 1 FROM blocked_requests WHERE mailbox = ? AND login = ? AND blocked_until > ?",
            (mailbox(sender), login, now),
        ).fetchone()
        return row is not None

    def requests_by_login(self, login, since):
        return self.db.execute(
            "SELECT COUNT(*) FROM request_log WHERE login = ? AND requested_at > ?", (login, since)
        ).fetchone()[0]

    def requests_for_sender(self, sender, since):
        """The requests since then for the mailbox of sender, under any of its variants."""
        return self.db.execute(
            "SELECT COUNT(*) FROM request_log WHERE mailbox = ? AND requested_at > ?", (mailbox(sender), since)
        ).fetchone()[0]

    # The web pages' sessions

    def open_session(self, login, now, ttl):
        """A new session of login for ttl seconds; its id (for the cookie)."""
        session_id = secrets.token_urlsafe(TOKEN_BYTES)
        with self.transaction():
            self.db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
            self.db.execute(
                "INSERT INTO web_sessions (id_sha256, login, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_digest(session_id), login, now, now + ttl),
            )
        return session_id

    def session_login(self, session_id, now):
        """The login of a session that has not ended or expired, or None."""
        row = self.db.execute(
            "SELECT login FROM web_sessions WHERE id_sha256 = ? AND expires_at > ?", (token_digest(session_id), now)
        ).fetchone()
        return row[0] if row else None

    def end_session(self, session_id):
        with self.transaction():
            self.db.execute("DELETE FROM web_sessions WHERE id_sha256 = ?", (token_digest(session_id),))

    def end_sessions(self, login):
        """End every session of login (after a password change); how many there were."""
        with self.transaction():
            return self.db.execute("DELETE FROM web_sessions WHERE login = ?", (login,)).rowcount

    def pending_count(self, login, now):
        return self.db.execute(
            "SELECT COUNT(*) FROM validation_requests WHERE login = ? AND expires_at > ?", (login, now)
        ).fetchone()[0]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception; nests as a no-op."""

    def __init__(self, db):
        self.db = db
        self.outer = False

    def __enter__(self):
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if self.outer:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


class PgStore(Store):
    """The same store in the fleet's PostgreSQL database (fleet mode).

    The schema is Ansible's (store_schema, role submission_database): this
    service's database role may read and write the store's rows and nothing
    else, so ``migrate`` only checks that the schema is there. A connection that
    broke (a database restart) is opened again at the next call.
    """

    # pg_advisory_xact_lock's key for "opening a request": any 64-bit constant.
    REQUEST_LOCK = 0x5E4D_5641_4C49_4401

    def _connect(self):
        return _PgConnection(self.path, self.timeout)

    def lock_requests(self):
        self.db.execute("SELECT pg_advisory_xact_lock(?)", (self.REQUEST_LOCK,))

    def schema_version(self):
        row = self.db.execute("SELECT MAX(version) FROM schema_version WHERE version < 100").fetchone()
        return row[0] or 0

    def migrate(self):
        missing = [version for version, _ in MIGRATIONS if version > self.schema_version()]
        if missing:
            raise RuntimeError(
                f"the fleet database lacks the store's migrations {missing}: Ansible applies them (store_schema)"
            )
        return []


class _PgConnection:
    """What Store asks of sqlite3's connection, over psycopg: execute with ``?``
    placeholders, autocommit outside BEGIN ... COMMIT, in_transaction."""

    def __init__(self, conninfo, timeout):
        self.conninfo = conninfo
        self.timeout = timeout
        self.connection = None

    def _connected(self):
        import psycopg  # noqa: PLC0415 (a single host's service needs no psycopg)

        if self.connection is None or self.connection.closed:
            self.connection = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=int(self.timeout))
        return self.connection

    @property
    def in_transaction(self):
        import psycopg  # noqa: PLC0415

        return (
            self.connection is not None
            and not self.connection.closed
            and self.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        )

    def execute(self, statement, parameters=()):
        import psycopg  # noqa: PLC0415

        if statement == "BEGIN IMMEDIATE":
            statement = "BEGIN"
        statement = statement.replace("?", "%s")
        # A statement that starts a transaction or only reads, outside one, is
        # tried again once on a new connection when the old one had broken (the
        # database restarted since): nothing of it can have been applied twice.
        retry = statement == "BEGIN" or (not self.in_transaction and statement.startswith("SELECT"))
        connection = self._connected()
        try:
            return connection.execute(statement, parameters)
        except psycopg.OperationalError:
            if not connection.broken:
                raise
            self.connection = None
            if not retry:
                raise
        return self._connected().execute(statement, parameters)

    def close(self):
        if self.connection is not None:
            self.connection.close()


def open_store(spec):
    """The store a configuration names: a PostgreSQL connection string
    (``postgresql://...`` or ``host=... dbname=...``) or a SQLite file's path."""
    if spec.startswith(("postgresql:", "postgres:")) or "dbname=" in spec:
        return PgStore(spec)
    return Store(spec)
