"""The tables the milter asks, as Postfix has them: lmdb files, the store's socketmap, or
the fleet database's sender_logins view.

Each is a callable, key -> value or None, raising TableError when it cannot
answer; sender_lookup.first_owners asks them in smtpd_sender_login_maps' order.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time

import lmdb
from ansible_collections.mailops.submission.plugins.module_utils.fleet_schema import sender_logins_query
from ansible_collections.mailops.submission.plugins.module_utils.socketmap_protocol import (
    NetstringError,
    netstring,
    split_netstrings,
)

# A reply of the socketmap: "OK <logins>", at most a few logins long.
MAX_REPLY = 100000


class TableError(Exception):
    """A table that could not answer; the message says which and why."""


def file_identity(path):
    """What changes when a file is replaced or rewritten: device, inode,
    modification time and size (OSError when it cannot be read)."""
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


class LmdbTable:
    """A Postfix lmdb table (postmap writes keys and values with a trailing NUL).

    The allowlist role rebuilds a table into a new file and renames it over the
    old one; the file is opened again when the path names another file.
    """

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.environment = None
        self.file_id = None

    def opened(self):
        try:
            file_id = file_identity(self.path)
        except OSError as exc:
            raise TableError(f"{self.path}: {exc.strerror}") from exc
        with self.lock:
            if file_id != self.file_id:
                if self.environment is not None:
                    self.environment.close()
                    self.environment = None
                try:
                    # lock=False as Postfix: a table is never written in place.
                    self.environment = lmdb.open(self.path, readonly=True, lock=False, subdir=False, max_readers=1024)
                except lmdb.Error as exc:
                    raise TableError(f"{self.path}: {exc}") from exc
                self.file_id = file_id
            return self.environment

    def __call__(self, key):
        encoded = key.encode()
        try:
            with self.opened().begin(buffers=False) as transaction:
                value = transaction.get(encoded + b"\0")
                if value is None:
                    value = transaction.get(encoded)
        except lmdb.Error as exc:
            raise TableError(f"{self.path}: {exc}") from exc
        return None if value is None else value.rstrip(b"\0").decode()


class ThreadConnections:
    """One connection a thread to a table's server, opened when first needed
    and again once when a question meets a broken one (a restarted server).

    A question the server does not answer in time is not asked again, and for
    the next `timeout` seconds no thread asks that server: each question
    raises TableError at once (a 4xx for the messages that need it), so a hung
    server holds the lookup threads for one timeout, not for every message.
    """

    timeout = 5

    def __init__(self):
        self.local = threading.local()
        self.quiet_until = 0.0

    def open(self):
        raise NotImplementedError

    def connection(self):
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = self.open()
        return connection

    def drop(self):
        connection, self.local.connection = getattr(self.local, "connection", None), None
        if connection is not None:
            connection.close()

    def twice(self, ask, errors, label, timeouts=(TimeoutError,)):
        """ask(connection)'s answer; on one of errors, once more on a new
        connection; TableError(label: ...) if that fails too, or at once on one
        of timeouts, or while the server is given time after one."""
        if time.monotonic() < self.quiet_until:
            raise TableError(f"{label}: did not answer in time; asked again within {self.timeout:g} s")
        for attempt in (1, 2):
            try:
                return ask(self.connection())
            except errors as exc:
                self.drop()
                if isinstance(exc, timeouts):
                    self.quiet_until = time.monotonic() + self.timeout
                    raise TableError(f"{label}: did not answer within {self.timeout:g} s") from exc
                if attempt == 2:
                    raise TableError(f"{label}: {str(exc).strip()}") from exc
        return None


class SocketmapTable(ThreadConnections):
    """A socketmap_table(5) client: one connection a thread, opened again once if it broke."""

    def __init__(self, path, name, timeout=10):
        super().__init__()
        self.path = path
        self.name = name.encode()
        self.timeout = timeout

    def open(self):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(self.timeout)
        try:
            connection.connect(self.path)
        except OSError:
            connection.close()
            raise
        return connection

    @staticmethod
    def ask(connection, request):
        connection.sendall(netstring(request))
        received = b""
        while True:
            replies, rest = split_netstrings(received, limit=MAX_REPLY)
            if replies:
                return replies[0]
            data = connection.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            received = rest + data

    def __call__(self, key):
        request = self.name + b" " + key.encode()
        reply = self.twice(
            lambda connection: self.ask(connection, request), (OSError, NetstringError), f"socketmap {self.path}"
        )
        status, _, value = reply.decode("utf-8", "replace").partition(" ")
        if status == "OK":
            return value
        if status == "NOTFOUND":
            return None
        raise TableError(f"socketmap {self.path}: {status} {value}".strip())


class PgsqlTable(ThreadConnections):
    """The fleet database's sender_logins, asked with the query Postfix's pgsql
    table asks: one connection a thread, opened again once if it broke, so that
    the milter rides out a database restart; an outage raises TableError (4xx).

    conninfo: a libpq connection string; its password comes from a passfile,
    never from the configuration.
    """

    def __init__(self, conninfo, timeout=5):
        super().__init__()
        self.conninfo = conninfo
        self.timeout = timeout
        self.query = sender_logins_query("pyformat")

    def open(self):
        import psycopg  # noqa: PLC0415 (a single host's milter needs no psycopg)

        # A statement the server does not answer in time is cancelled by the
        # server, and a peer that went silent is noticed by the kernel, so no
        # lookup thread waits for ever on a hung database.
        return psycopg.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=max(1, math.ceil(self.timeout)),
            options=f"-c statement_timeout={int(self.timeout * 1000)}",
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=2,
            tcp_user_timeout=int(self.timeout * 1000),
        )

    def __call__(self, key):
        import psycopg  # noqa: PLC0415

        rows = self.twice(
            lambda connection: connection.execute(self.query, (key,)).fetchall(),
            psycopg.Error,
            "database",
            # The server cancelled the statement at statement_timeout.
            timeouts=(psycopg.errors.QueryCanceled,),
        )
        return ",".join(row[0] for row in rows) or None
