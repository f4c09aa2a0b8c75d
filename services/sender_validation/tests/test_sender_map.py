"""The store as Postfix reads it: the socketmap server, asked by Postfix's own postmap."""

import os
import shutil
import socket
import subprocess

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.socketmap_protocol import (
    NetstringError,
    netstring,
    split_netstrings,
)
from ansible_collections.mailops.submission.tests.unit.plugins.modules.allowlist_harness import POSTMAP
from sender_validation import sender_map as sender_map_module
from sender_validation.map_server import serving
from sender_validation.sender_map import KEPT_ENTRY_OVERHEAD, KEPT_REQUEST_BYTES, SenderMap

ALICE, BOB = "alice@runbox.com", "bob@hosted.example"
NEW = "alice.new@gmail.example"
DAY = 86400
HOSTED = ["runbox.com", "hosted.example"]


@pytest.fixture
def served(store, tmp_path):
    """The server on a socket in tmp_path, in a thread; yields the socket's path."""
    path = str(tmp_path / "senders.sock")
    with serving(SenderMap(store.path, HOSTED), path):
        yield path


def postmap_lookup(config, socket_path, key):
    """What Postfix's socketmap client gets: (value or None, whether it was an error)."""
    found = subprocess.run(
        [POSTMAP, "-c", str(config), "-q", key, f"socketmap:unix:{socket_path}:senders"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 0:
        return found.stdout.strip(), False
    # postmap exits 1 for "not found", and says nothing; a lookup error is fatal.
    return None, found.returncode != 1 or "fatal" in found.stderr


def ask(socket_path, *payloads):
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(socket_path)
        for payload in payloads:
            client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while data := client.recv(65536):
            received += data
        replies, rest = split_netstrings(received)
        assert rest == b"", f"a reply cut short: {rest!r}"
        return replies


def test_postfix_reads_a_confirmation_and_a_removal_at_once(store, served, postfix_config):
    assert postmap_lookup(postfix_config, served, NEW) == (None, False)
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    store.confirm(store.request(NEW, BOB, "192.0.2.2", now=1000, ttl=DAY), BOB, now=1001)
    assert postmap_lookup(postfix_config, served, NEW) == (f"{ALICE},{BOB}", False)
    assert postmap_lookup(postfix_config, served, NEW.upper()) == (f"{ALICE},{BOB}", False)
    store.remove(NEW, BOB)
    assert postmap_lookup(postfix_config, served, NEW) == (ALICE, False)


def test_a_store_that_cannot_be_read_is_a_lookup_error_not_a_miss(store, served, postfix_config, tmp_path):
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    store.close()
    os.rename(store.path, tmp_path / "moved.sqlite")
    assert postmap_lookup(postfix_config, served, NEW) == (None, True)
    assert ask(served, netstring(b"senders " + NEW.encode()))[0].startswith(b"TEMP ")
    # Back in place, the next lookup finds it: nothing was lost, nothing to restart.
    os.rename(tmp_path / "moved.sqlite", store.path)
    assert postmap_lookup(postfix_config, served, NEW) == (ALICE, False)


def test_a_corrupt_store_is_a_lookup_error(store, served):
    store.close()
    with open(store.path, "r+b") as handle:
        handle.write(b"this is not SQLite" * 10)
    assert ask(served, netstring(b"senders " + NEW.encode()))[0].startswith(b"TEMP ")


def test_the_providers_own_domains_never_reach_the_store(store, served, postfix_config):
    store.close()
    os.unlink(store.path)
    for key in (ALICE, "alice+tag@runbox.com", "BOB@Hosted.Example", "@runbox.com", "alice"):
        assert postmap_lookup(postfix_config, served, key) == (None, False), key


def test_one_connection_answers_many_lookups_and_a_bad_request_ends_only_its_own(store, served):
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    replies = ask(served, netstring(b"senders " + NEW.encode()), netstring(b"senders x@y.example"))
    assert replies == [b"OK " + ALICE.encode(), b"NOTFOUND "]
    assert ask(served, netstring(b"other " + NEW.encode()))[0].startswith(b"PERM ")
    assert ask(served, b"999999999:x,") == []
    assert ask(served, b"5:senders") == []
    assert ask(served, netstring(b"senders " + NEW.encode())) == [b"OK " + ALICE.encode()]


@pytest.mark.parametrize(
    ("raw", "payloads", "rest"),
    [
        (b"0:,", [b""], b""),
        (b"3:abc,1:x,", [b"abc", b"x"], b""),
        (b"3:abc,2:x", [b"abc"], b"2:x"),
        (b"12", [], b"12"),
        (b"", [], b""),
    ],
)
def test_netstrings_are_split_and_a_partial_one_kept(raw, payloads, rest):
    assert split_netstrings(raw) == (payloads, rest)


@pytest.mark.parametrize("raw", [b"3:abcd", b":abc,", b"x:abc,", b"1234567", b"1000001:" + b"a" * 10])
def test_a_malformed_netstring_is_refused(raw):
    with pytest.raises(NetstringError):
        split_netstrings(raw)


def test_a_connection_that_stays_open_sees_the_store_moved_and_restored(store, served, tmp_path):
    """Postfix keeps its connection: a move, and a restore of another file over
    the path, count at the next lookup on it."""
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    store.close()
    backup = tmp_path / "backup.sqlite"
    shutil.copyfile(store.path, backup)
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(served)

        def lookup():
            return lookup_on(client, NEW)

        assert lookup() == b"OK " + ALICE.encode()
        os.rename(store.path, tmp_path / "moved.sqlite")
        assert lookup().startswith(b"TEMP ")
        restored = type(store)(store.path)
        restored.migrate()
        restored.close()
        assert lookup() == b"NOTFOUND "
        os.replace(backup, store.path)
        assert lookup() == b"OK " + ALICE.encode()


def lookup_on(client, key):
    """One lookup on a connection that stays open, as smtpd's."""
    client.sendall(netstring(b"senders " + key.encode()))
    received = b""
    while not (replies := split_netstrings(received)[0]):
        received += client.recv(65536)
    return replies[0]


def test_kept_answers_never_outlive_a_change(store, served):
    """Answers are kept between changes; every confirmation and removal, made
    by another connection to the store, counts at the very next lookup."""
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(served)
        for round_number in range(100):
            assert lookup_on(client, NEW) == b"NOTFOUND ", round_number
            assert lookup_on(client, NEW) == b"NOTFOUND ", round_number
            store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
            assert lookup_on(client, NEW) == b"OK " + ALICE.encode(), round_number
            assert lookup_on(client, NEW) == b"OK " + ALICE.encode(), round_number
            store.remove(NEW, ALICE)


def test_answers_are_kept_until_the_store_changes(store, tmp_path):
    sender_map = SenderMap(store.path, HOSTED)
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    request = b"senders " + NEW.encode()
    assert sender_map.answer(request) == b"OK " + ALICE.encode()
    before = sender_map.watch.generation()
    assert before is not None
    assert sender_map.answer(request) == b"OK " + ALICE.encode()
    assert sender_map.kept[request] == (before, b"OK " + ALICE.encode())
    os.chmod(store.path, 0o600)
    assert sender_map.watch.generation() != before


def test_a_store_directory_moved_away_is_read_at_each_lookup(store, tmp_path):
    """The watch covers the directory; once it is gone nothing is kept, and the
    path, now empty, is a lookup error."""
    sender_map = SenderMap(store.path, HOSTED)
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    store.close()
    request = b"senders " + NEW.encode()
    assert sender_map.answer(request) == b"OK " + ALICE.encode()
    directory = os.path.dirname(store.path)
    os.rename(directory, directory + ".moved")
    assert sender_map.answer(request).startswith(b"TEMP ")
    assert sender_map.watch.generation() is None
    os.rename(directory + ".moved", directory)
    assert sender_map.answer(request) == b"OK " + ALICE.encode()


def _kept_size(sender_map):
    return sum(len(request) + len(reply) + KEPT_ENTRY_OVERHEAD for request, (_, reply) in sender_map.kept.items())


def test_a_key_longer_than_any_address_is_answered_and_never_kept(store):
    """100 kB keys (a From header the milter asks about) took 65,536 places of
    100 kB each: gigabytes. They are answered, and cost the kept answers nothing."""
    sender_map = SenderMap(store.path, HOSTED)
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    request = b"senders " + NEW.encode()
    assert sender_map.answer(request) == b"OK " + ALICE.encode()
    for number in range(200):
        huge = b"senders " + b"x" * 100_000 + str(number).encode() + b"@gmail.example"
        assert sender_map.answer(huge) == b"NOTFOUND "
    assert list(sender_map.kept) == [request]
    assert sender_map.kept_bytes == _kept_size(sender_map) < 1000
    # The longest address: a 64-octet local part, a 255-octet domain.
    longest = b"senders " + b"a" * 64 + b"@" + b".".join([b"b" * 63] * 4)
    assert len(longest) == KEPT_REQUEST_BYTES
    sender_map.answer(longest)
    assert longest in sender_map.kept


def test_kept_answers_stay_within_their_bytes_and_count(store, monkeypatch):
    monkeypatch.setattr(sender_map_module, "KEPT_BYTES", 20_000)
    monkeypatch.setattr(sender_map_module, "KEPT_ANSWERS", 100)
    sender_map = SenderMap(store.path, HOSTED)
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    most = 0
    for number in range(2000):
        # Keys of every length up to the longest address, found or not.
        local = f"u{number}-".ljust(1 + number % 64, "x")
        assert sender_map.answer(f"senders {local}@gmail.example".encode()) == b"NOTFOUND "
        assert sender_map.answer(b"senders " + NEW.encode()) == b"OK " + ALICE.encode()
        assert sender_map.kept_bytes == _kept_size(sender_map) <= 20_000
        assert len(sender_map.kept) <= 100
        most = max(most, sender_map.kept_bytes)
    assert most > 15_000, "the answers are kept up to the bound"
