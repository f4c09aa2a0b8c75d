"""The store as a Postfix table: a socketmap_table(5) server.

Postfix asks ``senders <key>`` for each sender it checks against
smtpd_sender_login_maps and gets ``OK <logins>``, ``NOTFOUND`` or ``TEMP``.
The server stands between Postfix and SQLite because Postfix 3.7's sqlite
client (Debian 12) exits on any error from SQLite, and its proxymap is then
throttled, so that smtpd waits without answering; a store that cannot be read
must give a 4xx at once. Here any error of the store is ``TEMP``, which
Postfix turns into a 451 for that sender.

Keys at the provider's own domains are ``NOTFOUND`` without reading the store:
their addresses come from the account tables (which Postfix asks first), so
they keep working, tags and all, whatever state the store is in.

A thread a connection (each smtpd process keeps one open) reads requests with
plain recv() and answers with one send. Measured on the test containers, a
round trip takes 65 us: 18 us of socket and loop (as with a constant answer),
the rest the path check (7 us) and the query (15 us). A selectors loop took
80 us (benchmarks/README.md).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading

from sender_validation.validated_store import LOGINS_QUERY

MAP_NAME = "senders"
# socketmap_table(5): requests are at most 100000 bytes.
MAX_REQUEST = 100000
LENGTH_DIGITS = len(str(MAX_REQUEST))


class NetstringError(ValueError):
    pass


def netstring(payload):
    return b"%d:%s," % (len(payload), payload)


def split_netstrings(buffer):
    """The complete netstrings' payloads at the start of buffer, and what follows them."""
    payloads = []
    while buffer:
        colon = buffer.find(b":", 0, LENGTH_DIGITS + 1)
        if colon == -1:
            if len(buffer) > LENGTH_DIGITS or not buffer.isdigit():
                raise NetstringError(f"bad length {bytes(buffer[: LENGTH_DIGITS + 1])!r}")
            break
        digits = buffer[:colon]
        if not digits.isdigit():
            raise NetstringError(f"bad length {bytes(digits)!r}")
        length = int(digits)
        if length > MAX_REQUEST:
            raise NetstringError(f"request of {length} bytes")
        end = colon + 1 + length
        if len(buffer) <= end:
            break
        if buffer[end : end + 1] != b",":
            raise NetstringError("request not terminated by ','")
        payloads.append(bytes(buffer[colon + 1 : end]))
        buffer = buffer[end + 1 :]
    return payloads, buffer


class SenderMap:
    """Answers the lookups from the store, opened read-only, one connection a thread."""

    def __init__(self, store_path, hosted_domains):
        self.store_path = store_path
        self.hosted_domains = frozenset(domain.lower() for domain in hosted_domains)
        self.local = threading.local()

    def connection(self):
        """A connection to the store as the path names it now.

        A connection outlives a rename, a chmod or a restore over the file; the
        path is checked at each lookup (microseconds, against 0.2 ms to open
        the store again) so that those count at once.
        """
        stat = os.stat(self.store_path)
        if not os.access(self.store_path, os.R_OK):
            raise PermissionError(f"{self.store_path}: not readable")
        local = self.local
        if getattr(local, "db", None) is not None and local.file_id != (stat.st_dev, stat.st_ino):
            self.drop_connection()
        if getattr(local, "db", None) is None:
            uri = "file:" + os.path.abspath(self.store_path) + "?mode=ro"
            local.db = sqlite3.connect(uri, uri=True, timeout=2)
            local.file_id = (stat.st_dev, stat.st_ino)
        return local.db

    def drop_connection(self):
        db, self.local.db = getattr(self.local, "db", None), None
        if db is not None:
            db.close()

    def answer(self, request):
        """The reply payload for one request payload (bytes)."""
        name, _, key = request.decode("utf-8", "replace").partition(" ")
        if name != MAP_NAME:
            return b"PERM unknown map " + name.encode("utf-8", "replace")[:100]
        key = key.strip().lower()
        local, at, domain = key.rpartition("@")
        # Postfix also asks for "@domain" and, for local domains, the bare local
        # part; the store holds full addresses only.
        if not at or not local or not domain or domain in self.hosted_domains:
            return b"NOTFOUND "
        try:
            rows = self.connection().execute(LOGINS_QUERY, (key,)).fetchall()
        except (sqlite3.Error, OSError) as exc:
            self.drop_connection()
            return b"TEMP the validated-senders store cannot be read: " + str(exc).encode()[:200]
        if not rows:
            return b"NOTFOUND "
        return b"OK " + ",".join(row[0] for row in rows).encode()


class Server:
    """The listening socket, and a thread for each of Postfix's connections."""

    def __init__(self, listening, sender_map):
        self.listening = listening
        self.sender_map = sender_map
        self.running = False
        self.stopped = threading.Event()
        # accept() wakes up now and then to see whether shutdown() was called.
        self.listening.settimeout(0.5)

    def serve_forever(self):
        self.running = True
        try:
            while self.running:
                try:
                    connection, _ = self.listening.accept()
                except TimeoutError:
                    continue
                connection.settimeout(None)
                threading.Thread(target=self.serve, args=(connection,), daemon=True).start()
        finally:
            self.stopped.set()

    def shutdown(self):
        """Stop serve_forever (running in another thread) and wait until it has."""
        self.running = False
        self.stopped.wait()

    def server_close(self):
        self.listening.close()

    def serve(self, connection):
        buffer = b""
        try:
            while data := connection.recv(65536):
                requests, buffer = split_netstrings(buffer + data)
                if requests:
                    connection.sendall(b"".join(netstring(self.sender_map.answer(r)) for r in requests))
        except (NetstringError, OSError):
            # Not Postfix, or Postfix gone: the connection is dropped.
            pass
        finally:
            connection.close()
            self.sender_map.drop_connection()


def systemd_socket():
    """The listening socket systemd passed (socket activation), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    return socket.socket(fileno=3)


def make_server(sender_map, path=None):
    """A server on the socket systemd passed, or bound to path."""
    listening = systemd_socket()
    if listening is None:
        if path is None:
            raise RuntimeError("no socket: run under systemd's sender-validation-map.socket or give a path")
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listening.bind(path)
        listening.listen(64)
    return Server(listening, sender_map)
