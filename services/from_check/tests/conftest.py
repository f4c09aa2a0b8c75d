"""Fixtures: real lmdb tables built by Postfix's postmap, and the validation
service's real store served by its socketmap server."""

import subprocess

import pytest
from ansible_collections.mailops.submission.tests.unit.plugins.modules.allowlist_harness import (
    POSTMAP,
    empty_postfix_config,
)
from from_check.check import FromCheck
from sender_validation.map_server import serving
from sender_validation.sender_map import SenderMap
from sender_validation.store import Store

HOSTED = ["runbox.com", "hosted.example"]
DAY = 86400

# As the allowlist role builds them for the test inventory's accounts.
ACCOUNTS = {
    "alice@runbox.com": "alice@runbox.com",
    "a.liddell@runbox.com": "alice@runbox.com",
    "bob@hosted.example": "bob@hosted.example",
    "@hosted.example": "bob@hosted.example",
    "carol@runbox.com": "carol@runbox.com",
    "shared@runbox.com": "alice@runbox.com,carol@runbox.com",
}
VALIDATED = {"alice.inventory@gmail.example": "alice@runbox.com"}


def build(directory, name, pairs):
    """An lmdb table as postmap writes it; returns its file's path."""
    assert POSTMAP, "Postfix's postmap is not installed"
    config = directory / "postfix"
    config.mkdir(exist_ok=True)
    empty_postfix_config(config)
    source = directory / name
    source.write_text("".join(f"{key} {value}\n" for key, value in pairs.items()))
    subprocess.run([POSTMAP, "-c", str(config), f"lmdb:{source}"], check=True)
    return f"{source}.lmdb"


@pytest.fixture
def tables(tmp_path):
    return [build(tmp_path, "sender_logins_accounts", ACCOUNTS), build(tmp_path, "sender_logins_validated", VALIDATED)]


@pytest.fixture
def store(tmp_path):
    directory = tmp_path / "store"
    directory.mkdir()
    opened = Store(str(directory / "senders.sqlite"))
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def store_socket(store, tmp_path):
    """The store's socketmap server, in a thread; yields its socket's path."""
    path = str(tmp_path / "map.sock")
    with serving(SenderMap(store.path, HOSTED), path):
        yield path


@pytest.fixture
def validate(store):
    """Confirm a sender for a login in the store, as the web service does."""

    def confirm(sender, login):
        store.confirm(store.request(sender, login, "192.0.2.1", now=1000, ttl=DAY), login, now=1001)

    return confirm


@pytest.fixture
def with_store(tables, store_socket, validate):
    """A check on the tables and the store, in which alice validated alice.store@gmail.example."""
    validate("alice.store@gmail.example", "alice@runbox.com")
    return FromCheck.from_config({"lmdb_tables": tables, "store_socket": store_socket})


@pytest.fixture
def build_table(tmp_path):
    return lambda name, pairs: build(tmp_path, name, pairs)
