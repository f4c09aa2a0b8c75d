"""The auth client against a real Dovecot auth service (tests/conftest.py)."""

import socket
import threading
import time

import pytest
from sender_validation.dovecot_auth import AuthError, DovecotAuth, _escape, _unescape


@pytest.mark.parametrize(
    ("login", "user"),
    [
        ("alice", "alice@runbox.com"),
        ("Alice@RunBox.com", "alice@runbox.com"),
        ("bob%hosted.example", "bob@hosted.example"),
        ("bob@hosted.example", "bob@hosted.example"),
    ],
)
def test_the_smtp_login_forms_map_to_the_canonical_user(dovecot_socket, login, user):
    password = "alice-Test-pw1" if user.startswith("alice") else "bob-Test-pw2"
    result = DovecotAuth(dovecot_socket).authenticate(login, password, "192.0.2.10")
    assert result.ok and result.user == user, result


@pytest.mark.parametrize(
    ("login", "password"),
    [
        ("alice", "wrong"),
        ("alice", ""),
        ("bob", "bob-Test-pw2"),  # bare logins are the primary domain's only
        ("nobody", "alice-Test-pw1"),
        ("alice\0bob", "x"),
    ],
)
def test_a_wrong_login_or_password_fails(dovecot_socket, login, password):
    auth = DovecotAuth(dovecot_socket)
    assert auth.authenticate("alice", "alice-Test-pw1", "192.0.2.11").ok, "the right password must pass first"
    result = auth.authenticate(login, password, "192.0.2.11")
    assert not result.ok and not result.temporary, result


def test_a_bad_client_address_is_refused_before_anything_is_sent(dovecot_socket):
    with pytest.raises(ValueError, match="not-an-ip"):
        DovecotAuth(dovecot_socket).authenticate("alice", "alice-Test-pw1", "not-an-ip")


def test_no_socket_is_an_auth_error_not_a_failed_login(tmp_path):
    with pytest.raises(AuthError, match="cannot connect"):
        DovecotAuth(str(tmp_path / "missing")).authenticate("alice", "alice-Test-pw1", "192.0.2.13")


def test_failures_from_one_address_are_slowed_and_others_are_not(slow_dovecot_socket):
    auth = DovecotAuth(slow_dovecot_socket)
    start = time.monotonic()
    for _ in range(2):
        assert not auth.authenticate("alice", "wrong", "198.51.100.7").ok
    attacker = time.monotonic() - start
    start = time.monotonic()
    assert auth.authenticate("alice", "alice-Test-pw1", "198.51.100.8").ok
    honest = time.monotonic() - start
    assert attacker >= 2 * 2 * 0.9, f"two failures took {attacker:.2f} s"
    assert honest < 1.0, f"a login from another address waited {honest:.2f} s"


def test_values_round_trip_through_dovecots_escaping():
    for value in ["plain", "tab\there", "new\nline", "\x01one", "cr\r"]:
        escaped = _escape(value)
        assert "\t" not in escaped and "\n" not in escaped
        assert _unescape(escaped) == value


def test_a_server_that_hangs_up_is_an_auth_error(tmp_path):
    path = str(tmp_path / "hangup")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def hang_up():
        conn, _ = server.accept()
        conn.sendall(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n")
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    with pytest.raises(AuthError, match=r"the auth service (closed|did not answer)"):
        DovecotAuth(path, timeout=5).authenticate("alice", "x", "192.0.2.14")
    server.close()


@pytest.mark.parametrize(
    "address",
    ["2001:db8::7%x\tno-penalty", "2001:db8::7%x\nAUTH\t2", "192.0.2.1\t", "192.0.2.1\rno-penalty", "2001:db8::7%\x01"],
)
@pytest.mark.parametrize("field", ["remote_ip", "local_ip"])
def test_an_address_with_a_control_character_never_reaches_dovecot(dovecot_socket, address, field):
    addresses = {"remote_ip": "192.0.2.15", field: address}
    with pytest.raises(ValueError, match="not an IP address") as caught:
        DovecotAuth(dovecot_socket).authenticate("alice", "wrong", **addresses)
    assert repr(address) in str(caught.value)


def test_a_scope_id_is_dropped_from_rip_and_lip(tmp_path):
    path = str(tmp_path / "recorder")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    lines = []

    def record():
        conn, _ = server.accept()
        reader = conn.makefile("r", newline="\n")
        reader.readline(), reader.readline()  # VERSION, CPID
        conn.sendall(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nDONE\n")
        lines.append(reader.readline())
        conn.sendall(b"FAIL\t1\tuser=alice@runbox.com\n")
        conn.close()

    threading.Thread(target=record, daemon=True).start()
    result = DovecotAuth(path, timeout=5).authenticate("alice", "x", "fe80::1%eth0", local_ip="FE80::2%1")
    server.close()
    assert not result.ok
    fields = lines[0].rstrip("\n").split("\t")
    assert "rip=fe80::1" in fields and "lip=fe80::2" in fields, fields
