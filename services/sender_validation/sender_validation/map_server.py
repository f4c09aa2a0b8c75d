"""The socketmap_table(5) server: the sender map on the sockets Postfix and the milter ask on.

The sockets come from systemd (sender-validation-map.socket: Postfix's, in its
chroot, then the header-From milter's), or, for the tests, one bound to a
path. Each listening socket has a socketserver server of its own, in a thread
of its own, and each connection a thread (each smtpd process keeps one open)
that reads requests with plain recv() and answers each batch with one send.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading

from ansible_collections.mailops.submission.plugins.module_utils.socketmap_protocol import (
    NetstringError,
    netstring,
    split_netstrings,
)

# socketserver's own default: how long serve_forever() may take to see a shutdown().
POLL_INTERVAL = 0.5
BACKLOG = 64


class MapRequestHandler(socketserver.BaseRequestHandler):
    """One client's connection: netstring requests in, a netstring reply for each, in order."""

    def handle(self):
        sender_map = self.server.sender_map
        buffer = b""
        try:
            while data := self.request.recv(65536):
                requests, buffer = split_netstrings(buffer + data)
                if requests:
                    self.request.sendall(b"".join(netstring(sender_map.answer(r)) for r in requests))
        except (NetstringError, OSError):
            # Not a socketmap client, or the client gone: the connection is dropped.
            pass

    def finish(self):
        self.server.sender_map.drop_connection()


class MapServer(socketserver.ThreadingUnixStreamServer):
    """One listening socket, already bound and listening; a thread for each connection to it."""

    # smtpd keeps its connection open: neither shutdown nor exit waits for one.
    daemon_threads = True
    block_on_close = False

    def __init__(self, listening, sender_map):
        super().__init__(listening.getsockname(), MapRequestHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = listening
        self.sender_map = sender_map


class MapServers:
    """The servers of every listening socket, served and stopped together."""

    def __init__(self, servers):
        self.servers = servers

    def serve_forever(self, poll_interval=POLL_INTERVAL):
        """Serve until shutdown(): the first socket in this thread, each other in a thread of its own."""
        others = [
            threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
            for server in self.servers[1:]
        ]
        for thread in others:
            thread.start()
        try:
            self.servers[0].serve_forever(poll_interval)
        finally:
            for server in self.servers[1:]:
                server.shutdown()
            for thread in others:
                thread.join()

    def shutdown(self):
        """Stop serve_forever (running in another thread) and wait until it has.

        The servers are stopped at once, each in a thread: the wait is one poll
        interval at most, not one for each socket.
        """
        stopping = [threading.Thread(target=server.shutdown) for server in self.servers]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()

    def server_close(self):
        for server in self.servers:
            server.server_close()


def systemd_sockets():
    """The listening sockets systemd passed (socket activation), in the unit's order.

    sd_listen_fds(3) through Debian's python3-systemd, imported here only: the
    tests bind sockets of their own and run without it.
    """
    try:
        from systemd import daemon  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(f"socket activation needs python3-systemd (systemd.daemon): {exc}") from exc
    return [socket.socket(fileno=fd) for fd in daemon.listen_fds()]


def bound_socket(path):
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listening.bind(path)
        listening.listen(BACKLOG)
    except OSError:
        listening.close()
        raise
    return listening


def make_server(sender_map, path=None):
    """The servers on a socket bound to path or, without one, on those systemd passed
    (Postfix's, then the milter's)."""
    listenings = [bound_socket(path)] if path is not None else systemd_sockets()
    if not listenings:
        raise RuntimeError("no socket: run under systemd's sender-validation-map.socket or give a path")
    return MapServers([MapServer(listening, sender_map) for listening in listenings])


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
        thread.join()
        server.server_close()
