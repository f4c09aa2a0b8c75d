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
plain recv() and answers with one send. Answers are kept until anything
changes in the store's directory, as the kernel reports it (inotify): a
commit, a checkpoint, a chmod, a move or a restore over the file. The kernel
queues that report inside the writer's own write(), rename() or chmod(), before
they return, and each lookup reads the queue before it trusts a kept answer, so
a confirmation or a removal still counts at the very next lookup. A kept answer
costs one read() that finds nothing; a lookup in the store, a stat, an access
check and a query of SQLite, each slow on a thread that slept between
Postfix's requests (126 us against 20 us, benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sqlite3
import struct
import sys
import threading

from ansible_collections.mailops.submission.plugins.module_utils.socketmap_protocol import (
    NetstringError,
    netstring,
    split_netstrings,
)
from ansible_collections.mailops.submission.plugins.module_utils.validated_store import LOGINS_QUERY

MAP_NAME = "senders"


# inotify(7): what in the store's directory makes a kept answer stale.
IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
WATCHED = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
# The directory itself gone or moved: the watch no longer covers the path.
WATCH_LOST = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF
EVENT_HEADER = struct.Struct("iIII")
# The kept answers are bounded by count and by size: Postfix's keys run to
# 100 kB (a From header the milter asks about), so 65,536 of them would be
# gigabytes. Each answer counts its request, its reply and Python's objects
# around them; a request longer than any address the store can hold (RFC 5321:
# 64 + 1 + 255 octets, after "senders ") is answered and never kept, so that
# large keys neither fill the memory nor push out the answers asked most.
KEPT_ANSWERS = 65536
KEPT_BYTES = 16 * 1024 * 1024
KEPT_ENTRY_OVERHEAD = 200
KEPT_REQUEST_BYTES = len(b"senders ") + 64 + 1 + 255


class StoreWatch:
    """A count of the changes in a directory, read without waiting.

    ``generation()`` drains the kernel's queue of inotify events and returns a
    number that differs from any earlier one if an event came in between.
    None means that nothing can be kept: inotify was not available, or the
    directory was deleted or moved away.
    """

    def __init__(self, directory):
        self.lock = threading.Lock()
        self.count = 0
        self.fd = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(directory), WATCHED) < 0:
                error = ctypes.get_errno()
                os.close(fd)
                raise OSError(error, f"inotify_add_watch {directory}")
        except (OSError, AttributeError) as exc:
            print(f"sender-map: answers are not kept, each lookup reads the store: {exc}", file=sys.stderr)
            return
        self.fd = fd

    def generation(self):
        with self.lock:
            while self.fd is not None:
                try:
                    events = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                self.count += 1
                offset = 0
                while offset < len(events):
                    _, mask, _, length = EVENT_HEADER.unpack_from(events, offset)
                    offset += EVENT_HEADER.size + length
                    if mask & WATCH_LOST and not mask & IN_Q_OVERFLOW:
                        print("sender-map: the store's directory is gone; answers are no longer kept", file=sys.stderr)
                        os.close(self.fd)
                        self.fd = None
                        break
            return self.count if self.fd is not None else None


class SenderMap:
    """Answers the lookups from the store, opened read-only, one connection a thread."""

    def __init__(self, store_path, hosted_domains):
        self.store_path = store_path
        self.hosted_domains = frozenset(domain.lower() for domain in hosted_domains)
        self.local = threading.local()
        self.watch = StoreWatch(os.path.dirname(os.path.abspath(store_path)))
        self.kept = {}
        self.kept_bytes = 0
        self.kept_lock = threading.Lock()

    def connection(self):
        """A connection to the store as the path names it now.

        A connection outlives a rename, a chmod or a restore over the file; the
        path is checked at each lookup that reads the store (microseconds,
        against 0.2 ms to open the store again), which every such change
        causes, since it ends the kept answers.
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
        """The reply payload for one request payload (bytes).

        A kept answer is found by the request as Postfix sent it, before any
        parsing: the shortest path for the answer asked most.
        """
        generation = self.watch.generation()
        kept = self.kept.get(request)
        if kept is not None and kept[0] == generation and generation is not None:
            return kept[1]
        reply = self.look_up(request)
        if generation is not None and not reply.startswith(b"TEMP ") and len(request) <= KEPT_REQUEST_BYTES:
            self.keep(request, generation, reply)
        return reply

    def keep(self, request, generation, reply):
        """Keep an answer; when either bound would be passed, the kept ones go first."""
        size = len(request) + len(reply) + KEPT_ENTRY_OVERHEAD
        if size > KEPT_BYTES:
            return
        with self.kept_lock:
            old = self.kept.pop(request, None)
            if old is not None:
                self.kept_bytes -= len(request) + len(old[1]) + KEPT_ENTRY_OVERHEAD
            if len(self.kept) >= KEPT_ANSWERS or self.kept_bytes + size > KEPT_BYTES:
                self.kept, self.kept_bytes = {}, 0
            # Tagged with the generation read before the query: an answer read
            # while a change came in is never taken for a current one.
            self.kept[request] = (generation, reply)
            self.kept_bytes += size

    def look_up(self, request):
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
        return b"OK " + ",".join(row[0] for row in rows).encode() if rows else b"NOTFOUND "


class Server:
    """The listening sockets, and a thread for each connection to them."""

    def __init__(self, listenings, sender_map):
        self.listenings = listenings
        self.sender_map = sender_map
        self.running = False
        self.stopped = threading.Event()
        for listening in listenings:
            # accept() wakes up now and then to see whether shutdown() was called.
            listening.settimeout(0.5)

    def serve_forever(self):
        self.running = True
        others = [threading.Thread(target=self.accept, args=(one,), daemon=True) for one in self.listenings[1:]]
        for thread in others:
            thread.start()
        try:
            self.accept(self.listenings[0])
        finally:
            for thread in others:
                thread.join()
            self.stopped.set()

    def accept(self, listening):
        while self.running:
            try:
                connection, _ = listening.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            threading.Thread(target=self.serve, args=(connection,), daemon=True).start()

    def shutdown(self):
        """Stop serve_forever (running in another thread) and wait until it has."""
        self.running = False
        self.stopped.wait()

    def server_close(self):
        for listening in self.listenings:
            listening.close()

    def serve(self, connection):
        buffer = b""
        try:
            while data := connection.recv(65536):
                requests, buffer = split_netstrings(buffer + data)
                if requests:
                    connection.sendall(b"".join(netstring(self.sender_map.answer(r)) for r in requests))
        except (NetstringError, OSError):
            # Not a socketmap client, or the client gone: the connection is dropped.
            pass
        finally:
            connection.close()
            self.sender_map.drop_connection()


SD_LISTEN_FDS_START = 3


def systemd_sockets():
    """The listening sockets systemd passed (socket activation), in the unit's order."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    return [socket.socket(fileno=SD_LISTEN_FDS_START + index) for index in range(count)]


def make_server(sender_map, path=None):
    """A server on the sockets systemd passed (Postfix's, then the milter's), or bound to path."""
    listenings = systemd_sockets()
    if not listenings:
        if path is None:
            raise RuntimeError("no socket: run under systemd's sender-validation-map.socket or give a path")
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listening.bind(path)
        listening.listen(64)
        listenings = [listening]
    return Server(listenings, sender_map)


@contextlib.contextmanager
def serving(sender_map, path):
    """The server on a socket at path, in a thread, for as long as the block runs."""
    server = make_server(sender_map, path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
