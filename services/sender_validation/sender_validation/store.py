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

Two classes, each on its own driver with nothing in between: ``SqliteStore``
(sqlite3, a file on one host; ``Store`` is its older name) and ``PgStore``
(psycopg 3, the fleet's PostgreSQL). ``BaseStore`` holds the operations, written
once. Their statements are written once too (``STATEMENTS``), in SQL that both
databases take, a parameter written ``{name}``; each class renders them once,
when it is defined, into its driver's own placeholder (``:name`` for sqlite3,
``%(name)s`` for psycopg) and runs them with a dict of the parameters. Nothing
rewrites SQL while the store runs. Each class says how its transactions begin:
SQLite's BEGIN IMMEDIATE takes the one write lock, waiting for it up to the
busy timeout; PostgreSQL's BEGIN, then an advisory lock where requests must be
opened one at a time (``lock_requests``). A PostgreSQL connection found lost
(the database restarted) is opened again, and a BEGIN or a read outside a
transaction that met the loss is run once more on the new one.

The schema and its migrations are the collection's (``validated_store``),
which the Ansible side reads too. They are applied in order, each in one
transaction, and ``schema_version`` records the last one applied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import secrets
import sqlite3
import string
import threading
import types

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import mailbox
from ansible_collections.mailops.submission.plugins.module_utils.validated_store import MIGRATIONS

try:
    import psycopg
except ImportError:  # a single host's service reads SQLite only
    psycopg = None

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


# The operations' statements, in SQL that SQLite and PostgreSQL both take;
# {name} stands for the parameter name, in the driver's placeholder (statements()).
STATEMENTS = {
    "open_request": "INSERT INTO validation_requests"
    " (sender, login, token_sha256, client_address, requested_at, expires_at)"
    " VALUES ({sender}, {login}, {token_sha256}, {client_address}, {requested_at}, {expires_at})",
    "drop_request": "DELETE FROM validation_requests WHERE sender = {sender} AND login = {login}",
    "log_request": "INSERT INTO request_log (sender, login, requested_at, mailbox)"
    " VALUES ({sender}, {login}, {requested_at}, {mailbox})",
    "find_request": "SELECT sender, login, client_address, requested_at, expires_at"
    " FROM validation_requests WHERE token_sha256 = {token_sha256}",
    "validate": "INSERT INTO validated_senders (sender, login, source, validated_at)"
    " VALUES ({sender}, {login}, 'user', {validated_at}) ON CONFLICT (sender, login) DO NOTHING",
    "block": "INSERT INTO blocked_requests (sender, login, blocked_until, mailbox)"
    " VALUES ({sender}, {login}, {blocked_until}, {mailbox})"
    " ON CONFLICT (sender, login) DO UPDATE SET blocked_until = excluded.blocked_until",
    "validated": "SELECT sender FROM validated_senders WHERE login = {login} ORDER BY sender",
    "pending": "SELECT sender FROM validation_requests WHERE login = {login} AND expires_at > {now} ORDER BY sender",
    "provided": "SELECT sender FROM validated_senders WHERE login = {login} AND source = 'inventory' ORDER BY sender",
    "remove_validated": "DELETE FROM validated_senders WHERE sender = {sender} AND login = {login} AND source = 'user'",
    "blocked": "SELECT 1 FROM blocked_requests WHERE mailbox = {mailbox} AND login = {login} AND blocked_until > {now}",
    "requests_by_login": "SELECT COUNT(*) FROM request_log WHERE login = {login} AND requested_at > {since}",
    "requests_for_mailbox": "SELECT COUNT(*) FROM request_log WHERE mailbox = {mailbox} AND requested_at > {since}",
    "drop_expired_sessions": "DELETE FROM web_sessions WHERE expires_at <= {now}",
    "open_session": "INSERT INTO web_sessions (id_sha256, login, created_at, expires_at)"
    " VALUES ({id_sha256}, {login}, {created_at}, {expires_at})",
    "session_login": "SELECT login FROM web_sessions WHERE id_sha256 = {id_sha256} AND expires_at > {now}",
    "end_session": "DELETE FROM web_sessions WHERE id_sha256 = {id_sha256}",
    "end_sessions": "DELETE FROM web_sessions WHERE login = {login}",
    "pending_count": "SELECT COUNT(*) FROM validation_requests WHERE login = {login} AND expires_at > {now}",
}


def statements(placeholder):
    """STATEMENTS for one driver, as attributes: each {name} written placeholder.format(name)."""
    rendered = {}
    for key, text in STATEMENTS.items():
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        rendered[key] = text.format(**{name: placeholder.format(name) for name in names})
    return types.SimpleNamespace(**rendered)


class BaseStore:
    """The store's operations, each one transaction (or one read), on a backend's connection.

    A backend class gives ``sql`` (``statements()`` in its driver's placeholder),
    ``_connect``, ``_in_transaction``, ``_begin``, ``_rollback``,
    ``lock_requests``, ``schema_version`` and ``migrate``, and ``_lost`` if a
    connection can be lost. The driver's own errors (sqlite3.Error,
    psycopg.Error) reach the caller.
    """

    sql = None

    def __init__(self, path, timeout=5.0):
        self.path = path  # the SQLite file, or PostgreSQL's connection string
        self.timeout = timeout
        self._local = threading.local()
        self._connections = []
        self._connections_lock = threading.Lock()

    @property
    def db(self):
        """This thread's connection, opened at its first use and again after it was lost."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and not self._lost(connection):
            return connection
        opened = self._connect()
        with self._connections_lock:
            if connection in self._connections:
                self._connections.remove(connection)
            self._connections.append(opened)
        self._local.connection = opened
        return opened

    def _lost(self, connection):
        """Whether connection is gone for good (a file's never is)."""
        return False

    def close(self):
        """Close every thread's connection."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN ... COMMIT, or ROLLBACK on an exception; inside another, a part of it.

        COMMIT goes on the connection that began: a connection lost on the way
        fails the commit instead of leaving the writes to a new one.
        """
        if self._in_transaction():
            yield self.db
            return
        connection = self._begin()
        try:
            yield connection
        except BaseException:
            self._rollback(connection)
            raise
        connection.execute("COMMIT")

    def _execute(self, statement, **parameters):
        """A statement of a transaction: its cursor."""
        return self.db.execute(statement, parameters)

    def _query(self, statement, **parameters):
        """A read, inside a transaction or alone: its cursor."""
        return self.db.execute(statement, parameters)

    # Requests and confirmations

    def request(self, sender, login, client_address, now, ttl):
        """Open a request for login to send as sender; return its token (to mail).

        A request already open for the same sender and login is replaced, so its
        link stops working.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self.transaction():
            self._drop_request(sender, login)
            self._execute(
                self.sql.open_request,
                sender=sender,
                login=login,
                token_sha256=token_digest(token),
                client_address=client_address,
                requested_at=now,
                expires_at=now + ttl,
            )
        return token

    def _drop_request(self, sender, login):
        """Remove the open request of sender for login; how many rows went (0 or 1)."""
        return self._execute(self.sql.drop_request, sender=sender, login=login).rowcount

    def log_request(self, sender, login, now):
        with self.transaction():
            self._execute(self.sql.log_request, sender=sender, login=login, requested_at=now, mailbox=mailbox(sender))

    def find_request(self, token):
        """The open request of a token, or None (unknown, used or replaced)."""
        row = self._query(self.sql.find_request, token_sha256=token_digest(token)).fetchone()
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
            self._execute(self.sql.validate, sender=request.sender, login=request.login, validated_at=now)
        return request.sender

    def refuse(self, token, now, block_for):
        """'This was not me': cancel the request and block its login from asking
        for that sender again for block_for seconds. The cancelled Request, or None."""
        with self.transaction():
            request = self.find_request(token)
            if request is None:
                return None
            self._drop_request(request.sender, request.login)
            self._execute(
                self.sql.block,
                sender=request.sender,
                login=request.login,
                blocked_until=now + block_for,
                mailbox=mailbox(request.sender),
            )
        return request

    # What a login sees and changes

    def senders(self, login, now):
        """(validated senders, pending senders) of a login, each sorted."""
        validated = [r[0] for r in self._query(self.sql.validated, login=login)]
        pending = [r[0] for r in self._query(self.sql.pending, login=login, now=now)]
        return validated, pending

    def provided(self, login):
        """The validated senders of a login that the provider set (the inventory's), sorted."""
        return [r[0] for r in self._query(self.sql.provided, login=login)]

    def remove(self, sender, login):
        """Remove a sender the login validated, or its pending request; whether anything went.

        What the provider set stays: Ansible's inventory owns it.
        """
        with self.transaction():
            gone = self._execute(self.sql.remove_validated, sender=sender, login=login).rowcount
            gone += self._drop_request(sender, login)
        return gone > 0

    # The abuse limits' inputs

    def blocked(self, sender, login, now):
        """Whether the mailbox of sender told login 'not me' (under any of its variants)."""
        row = self._query(self.sql.blocked, mailbox=mailbox(sender), login=login, now=now).fetchone()
        return row is not None

    def requests_by_login(self, login, since):
        return self._query(self.sql.requests_by_login, login=login, since=since).fetchone()[0]

    def requests_for_sender(self, sender, since):
        """The requests since then for the mailbox of sender, under any of its variants."""
        return self._query(self.sql.requests_for_mailbox, mailbox=mailbox(sender), since=since).fetchone()[0]

    # The web pages' sessions

    def open_session(self, login, now, ttl):
        """A new session of login for ttl seconds; its id (for the cookie)."""
        session_id = secrets.token_urlsafe(TOKEN_BYTES)
        digest = token_digest(session_id)
        with self.transaction():
            self._execute(self.sql.drop_expired_sessions, now=now)
            self._execute(self.sql.open_session, id_sha256=digest, login=login, created_at=now, expires_at=now + ttl)
        return session_id

    def session_login(self, session_id, now):
        """The login of a session that has not ended or expired, or None."""
        row = self._query(self.sql.session_login, id_sha256=token_digest(session_id), now=now).fetchone()
        return row[0] if row else None

    def end_session(self, session_id):
        with self.transaction():
            self._execute(self.sql.end_session, id_sha256=token_digest(session_id))

    def end_sessions(self, login):
        """End every session of login (after a password change); how many there were."""
        with self.transaction():
            return self._execute(self.sql.end_sessions, login=login).rowcount

    def pending_count(self, login, now):
        return self._query(self.sql.pending_count, login=login, now=now).fetchone()[0]


class SqliteStore(BaseStore):
    """The store in a SQLite file (one host), which this class migrates itself."""

    sql = statements(":{}")

    def _connect(self):
        # Used by its thread only; check_same_thread=False lets close() close it from another.
        # timeout: SQLite's busy timeout, how long a write waits for another's lock.
        connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        # WAL: the map Postfix asks reads while the web app writes.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _in_transaction(self):
        return self.db.in_transaction

    def _begin(self):
        """BEGIN IMMEDIATE: the write lock now, so that a transaction that reads
        and then writes cannot find, at its first write, that another wrote first."""
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def _rollback(self, connection):
        # SQLite may have rolled back already (a full disk, an I/O error): the
        # error that did so is the one to report.
        if connection.in_transaction:
            connection.execute("ROLLBACK")

    def lock_requests(self):
        """Inside a transaction: hold the right to open requests until it ends,
        so that the limits' counts and the new request are one step. SQLite's
        BEGIN IMMEDIATE already holds the one write lock."""

    def schema_version(self):
        exists = self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if exists.fetchone() is None:
            return 0
        return self._query("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0

    def migrate(self):
        """Apply the migrations not yet applied; return the versions applied."""
        applied = []
        with self.transaction():
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
        current = self.schema_version()
        for version, migration in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction():
                for statement in migration:
                    self._execute(statement)
                self._execute("INSERT INTO schema_version (version) VALUES (:version)", version=version)
            applied.append(version)
        return applied


# The name the tests and older callers know the SQLite store by.
Store = SqliteStore


class PgStore(BaseStore):
    """The same store in the fleet's PostgreSQL database (fleet mode).

    The schema is Ansible's (store_schema, role submission_database): this
    service's database role may read and write the store's rows and nothing
    else, so ``migrate`` only checks that the schema is there. A connection
    that broke (a database restart) is opened again at the next call; a BEGIN,
    or a read outside a transaction, that found it broken runs once more on the
    new one, as nothing of it can have been applied. A statement inside a
    transaction is not: the error reaches the caller, the transaction is gone.
    """

    sql = statements("%({})s")

    # pg_advisory_xact_lock's key for "opening a request": any 64-bit constant.
    REQUEST_LOCK = 0x5E4D_5641_4C49_4401

    def _connect(self):
        if psycopg is None:
            raise RuntimeError("the fleet database's store needs psycopg 3 (Debian: python3-psycopg)")
        # Autocommit: a read alone is its own transaction; transaction() says BEGIN itself.
        return psycopg.connect(self.path, autocommit=True, connect_timeout=int(self.timeout))

    def _lost(self, connection):
        return connection.closed

    def _in_transaction(self):
        connection = getattr(self._local, "connection", None)
        return (
            connection is not None
            and not connection.closed
            and connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        )

    def _once_more_if_lost(self, statement, parameters):
        """statement's cursor; run again on a new connection if this thread's was found lost."""
        connection = self.db
        try:
            return connection.execute(statement, parameters)
        except psycopg.OperationalError:
            if not connection.broken:
                raise
        return self.db.execute(statement, parameters)

    def _begin(self):
        self._once_more_if_lost("BEGIN", None)
        return self.db

    def _rollback(self, connection):
        # A connection lost took its transaction with it (the server rolls it
        # back): the error that met the loss is the one to report.
        if connection.closed:
            return
        try:
            connection.execute("ROLLBACK")
        except psycopg.OperationalError:
            if not connection.broken:
                raise

    def _query(self, statement, **parameters):
        if self._in_transaction():
            return self.db.execute(statement, parameters)
        return self._once_more_if_lost(statement, parameters)

    def lock_requests(self):
        self._execute("SELECT pg_advisory_xact_lock(%(key)s)", key=self.REQUEST_LOCK)

    def schema_version(self):
        return self._query("SELECT MAX(version) FROM schema_version WHERE version < 100").fetchone()[0] or 0

    def migrate(self):
        current = self.schema_version()
        missing = [version for version, _ in MIGRATIONS if version > current]
        if missing:
            raise RuntimeError(
                f"the fleet database lacks the store's migrations {missing}: Ansible applies them (store_schema)"
            )
        return []


def open_store(spec):
    """The store a configuration names: a PostgreSQL connection string
    (``postgresql://...`` or ``host=... dbname=...``) or a SQLite file's path."""
    if spec.startswith(("postgresql:", "postgres:")) or "dbname=" in spec:
        return PgStore(spec)
    return SqliteStore(spec)
