"""The socketmap server: its listening sockets, socket activation and shutdown."""

import socket
import sys
import threading
import time
import types

import pytest
from sender_validation.map_server import POLL_INTERVAL, make_server, serving
from sender_validation.sender_map import SenderMap
from test_sender_map import ALICE, HOSTED, NEW, lookup_on

FOUND = b"OK " + ALICE.encode()


@pytest.fixture
def sender_map(store):
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=86400), ALICE, now=1001)
    return SenderMap(store.path, HOSTED)


def listening_socket(path):
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(path))
    listening.listen()
    return listening


def passed_by_systemd(monkeypatch, fds):
    """python3-systemd's systemd.daemon, as if systemd had passed fds."""
    package, daemon = types.ModuleType("systemd"), types.ModuleType("systemd.daemon")
    daemon.listen_fds = lambda unset_environment=True: list(fds)
    package.daemon = daemon
    monkeypatch.setitem(sys.modules, "systemd", package)
    monkeypatch.setitem(sys.modules, "systemd.daemon", daemon)


def connected(path):
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    client.connect(str(path))
    return client


def stopped_promptly(server, thread):
    """Shut the server down as serving() does; whether it took a poll interval at most (and a margin)."""
    started = time.monotonic()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
    return time.monotonic() - started < POLL_INTERVAL + 1 and not thread.is_alive()


def test_both_sockets_systemd_passes_are_served_at_once(sender_map, monkeypatch, tmp_path):
    """Postfix's socket and the milter's: a connection kept open on one holds up neither."""
    postfix, milter = tmp_path / "postfix.sock", tmp_path / "milter.sock"
    passed_by_systemd(monkeypatch, [listening_socket(postfix).detach(), listening_socket(milter).detach()])
    server = make_server(sender_map)
    assert [one.server_address for one in server.servers] == [str(postfix), str(milter)]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with connected(postfix) as smtpd, connected(milter) as milter_client, connected(postfix) as other_smtpd:
        assert lookup_on(smtpd, NEW) == FOUND
        assert lookup_on(milter_client, NEW) == FOUND
        assert lookup_on(other_smtpd, NEW) == FOUND
        assert lookup_on(smtpd, "x@y.example") == b"NOTFOUND "
        assert stopped_promptly(server, thread)
    for path in (postfix, milter):
        with pytest.raises(ConnectionRefusedError):
            connected(path)


def test_shutdown_does_not_wait_for_the_connections_clients_keep_open(sender_map, tmp_path):
    """As each smtpd keeps its connection: serving() ends within a poll interval all the same."""
    path = tmp_path / "senders.sock"
    with socket.socket(socket.AF_UNIX) as smtpd:
        with serving(sender_map, str(path)):
            smtpd.connect(str(path))
            assert lookup_on(smtpd, NEW) == FOUND
            started = time.monotonic()
        assert time.monotonic() - started < POLL_INTERVAL + 1
        with pytest.raises(ConnectionRefusedError):
            connected(path)


def test_a_closed_connection_lets_go_of_its_store_connection(sender_map, tmp_path, monkeypatch):
    dropped = threading.Event()
    drop_connection = sender_map.drop_connection
    monkeypatch.setattr(sender_map, "drop_connection", lambda: (drop_connection(), dropped.set()))
    path = tmp_path / "senders.sock"
    with serving(sender_map, str(path)), connected(path) as client:
        assert lookup_on(client, NEW) == FOUND
        assert not dropped.is_set()
        client.close()
        assert dropped.wait(timeout=10)


def test_socket_activation_without_python3_systemd_names_it(sender_map, monkeypatch):
    monkeypatch.setitem(sys.modules, "systemd", None)
    with pytest.raises(RuntimeError, match="python3-systemd"):
        make_server(sender_map)


def test_no_socket_from_systemd_and_no_path_is_an_error(sender_map, monkeypatch):
    passed_by_systemd(monkeypatch, [])
    with pytest.raises(RuntimeError, match="no socket"):
        make_server(sender_map)
