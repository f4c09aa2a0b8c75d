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
"""

from __future__ import annotations

import os
import socket
import socketserver
import sqlite3
import threading

from sender_validation.validated_store import LOGINS_QUERY

MAP_NAME = "senders"
# socketmap_table(5): requests are at most 100000 bytes.
MAX_REQUEST = 100000


class NetstringError(ValueError):
    pass


def read_netstring(stream):
    """One netstring's payload from a binary stream; None at a clean end of stream."""
    digits = b""
    while True:
        char = stream.read(1)
        if not char:
            if digits:
                raise NetstringError("stream ended inside a length")
            return None
        if char == b":":
            break
        if not char.isdigit() or len(digits) >= len(str(MAX_REQUEST)):
            raise NetstringError(f"bad length {digits + char!r}")
        digits += char
    if not digits:
        raise NetstringError("empty length")
    length = int(digits)
    if length > MAX_REQUEST:
        raise NetstringError(f"request of {length} bytes")
    payload = stream.read(length)
    if len(payload) != length or stream.read(1) != b",":
        raise NetstringError("request not terminated by ','")
    return payload


def netstring(payload):
    return b"%d:%s," % (len(payload), payload)


class SenderMap:
    """Answers the lookups: the store opened read-only, one connection a thread."""

    def __init__(self, store_path, hosted_domains):
        self.store_path = store_path
        self.hosted_domains = frozenset(domain.lower() for domain in hosted_domains)
        self.local = threading.local()

    def connection(self):
        """This thread's connection to the store as the path names it now.

        A connection outlives a rename, a chmod or a restore over the file; the
        path is checked at each lookup (microseconds, against 0.2 ms to open
        the store again) so that those count at once.
        """
        stat = os.stat(self.store_path)
        if not os.access(self.store_path, os.R_OK):
            raise PermissionError(f"{self.store_path}: not readable")
        if getattr(self.local, "db", None) is not None and self.local.file_id != (stat.st_dev, stat.st_ino):
            self.drop_connection()
        if getattr(self.local, "db", None) is None:
            uri = "file:" + os.path.abspath(self.store_path) + "?mode=ro"
            self.local.db = sqlite3.connect(uri, uri=True, timeout=2)
            self.local.file_id = (stat.st_dev, stat.st_ino)
        return self.local.db

    def drop_connection(self):
        db = getattr(self.local, "db", None)
        self.local.db = None
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


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        sender_map = self.server.sender_map
        try:
            while True:
                request = read_netstring(self.rfile)
                if request is None:
                    return
                self.wfile.write(netstring(sender_map.answer(request)))
                self.wfile.flush()
        except (NetstringError, ConnectionError):
            # Not Postfix, or Postfix gone: drop the connection.
            return
        finally:
            sender_map.drop_connection()


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def systemd_socket():
    """The listening socket systemd passed (socket activation), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    return socket.socket(fileno=3)


def make_server(sender_map, path=None):
    """A server on the socket systemd passed, or bound to path."""
    inherited = systemd_socket()
    if inherited is not None:
        server = Server(inherited.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = inherited
    elif path is not None:
        server = Server(path, Handler)
    else:
        raise RuntimeError("no socket: run under systemd's sender-validation-map.socket or give a path")
    server.sender_map = sender_map
    return server
