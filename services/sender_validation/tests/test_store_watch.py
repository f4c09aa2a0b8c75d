"""The count of the changes in the store's directory (inotify)."""

import os

from sender_validation import store_watch
from sender_validation.sender_map import SenderMap
from sender_validation.store_watch import StoreWatch


def test_the_generation_moves_on_a_change_only(tmp_path):
    watch = StoreWatch(str(tmp_path))
    first = watch.generation()
    assert first is not None
    assert watch.generation() == first
    (tmp_path / "senders.sqlite-wal").write_bytes(b"x")
    second = watch.generation()
    assert second not in (None, first)
    assert watch.generation() == second
    os.chmod(tmp_path / "senders.sqlite-wal", 0o600)
    assert watch.generation() != second


def test_a_directory_removed_keeps_nothing(tmp_path, capsys):
    directory = tmp_path / "store"
    directory.mkdir()
    watch = StoreWatch(str(directory))
    assert watch.generation() is not None
    directory.rmdir()
    assert watch.generation() is None
    assert watch.generation() is None
    assert "the store's directory is gone" in capsys.readouterr().err


def test_without_inotify_each_lookup_reads_the_store(store, monkeypatch, capsys):
    def no_inotify(*args, **kwargs):
        raise OSError("no inotify here")

    monkeypatch.setattr(store_watch.ctypes, "CDLL", no_inotify)
    sender_map = SenderMap(store.path, ["runbox.com"])
    assert "answers are not kept, each lookup reads the store: no inotify here" in capsys.readouterr().err
    assert sender_map.watch.generation() is None
    request = b"senders alice.new@gmail.example"
    assert sender_map.answer(request) == b"NOTFOUND "
    assert sender_map.kept == {}
    store.confirm(
        store.request("alice.new@gmail.example", "alice@runbox.com", "192.0.2.1", now=1000, ttl=86400),
        "alice@runbox.com",
        now=1001,
    )
    assert sender_map.answer(request) == b"OK alice@runbox.com"
