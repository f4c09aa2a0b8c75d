"""The store as a Postfix table: the answers of the socketmap_table(5) server.

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

Answers are kept until anything changes in the store's directory
(``store_watch``), so that a confirmation or a removal still counts at the very
next lookup. A kept answer costs one read() that finds nothing; a lookup in the
store, a stat, an access check and a query of SQLite, each slow on a thread
that slept between Postfix's requests (126 us against 20 us,
benchmarks/README.md). ``map_server`` serves this map on the sockets Postfix
and the header-From milter ask on.
"""

from __future__ import annotations

import os
import sqlite3
import threading

from ansible_collections.mailops.submission.plugins.module_utils.validated_store import LOGINS_QUERY

from sender_validation.store_watch import StoreWatch

MAP_NAME = "senders"

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
