"""The keys and the order in which Postfix asks smtpd_sender_login_maps, as the milter asks them."""

import re

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.sender_lookup import (
    first_owners,
    lmdb_table_files,
    lookup_keys,
    owners,
    union,
)


@pytest.mark.parametrize(
    ("address", "keys"),
    [
        ("alice@runbox.com", ["alice@runbox.com", "@runbox.com"]),
        ("alice+news@runbox.com", ["alice+news@runbox.com", "alice@runbox.com", "@runbox.com"]),
        ("alice+a+b@runbox.com", ["alice+a+b@runbox.com", "alice@runbox.com", "@runbox.com"]),
        # "+x" has no local part left to strip to.
        ("+x@runbox.com", ["+x@runbox.com", "@runbox.com"]),
        ("alice", ["alice"]),
        ("", []),
    ],
)
def test_keys_are_postfix_s_in_postfix_s_order(address, keys):
    assert lookup_keys(address) == keys


def test_no_delimiter_no_stripped_key():
    assert lookup_keys("alice+news@runbox.com", delimiter="") == ["alice+news@runbox.com", "@runbox.com"]


def test_owners_split_as_postfix_writes_them():
    assert owners("Alice@runbox.com, bob@hosted.example,,carol@runbox.com") == {
        "alice@runbox.com",
        "bob@hosted.example",
        "carol@runbox.com",
    }


def test_the_first_key_found_decides_and_the_first_map_holding_it():
    accounts = {"@hosted.example": "bob@hosted.example", "info@hosted.example": "carol@runbox.com"}.get
    validated = {"info@hosted.example": "alice@runbox.com"}.get
    store = {"x@gmail.example": "alice@runbox.com", "info@hosted.example": "dave@runbox.com"}.get
    maps = [union(accounts, validated), store]
    assert first_owners("info@hosted.example", maps) == (
        {"carol@runbox.com", "alice@runbox.com"},
        "info@hosted.example",
    )
    assert first_owners("info+x@hosted.example", maps)[1] == "info@hosted.example"
    assert first_owners("other@hosted.example", maps) == ({"bob@hosted.example"}, "@hosted.example")
    assert first_owners("x@gmail.example", maps) == ({"alice@runbox.com"}, "x@gmail.example")
    assert first_owners("y@gmail.example", maps) == (set(), None)


def test_a_map_that_cannot_answer_is_not_a_miss():
    def broken(key):
        raise OSError("gone")

    with pytest.raises(OSError):
        first_owners("x@gmail.example", [union(lambda key: None), broken])


def test_lmdb_table_files():
    assert lmdb_table_files(["lmdb:/etc/postfix/a", "lmdb:/etc/postfix/b"]) == [
        "/etc/postfix/a.lmdb",
        "/etc/postfix/b.lmdb",
    ]


@pytest.mark.parametrize("table", ["hash:/etc/postfix/a", "lmdb:relative", "proxy:lmdb:/etc/postfix/a", "/etc/a"])
def test_other_tables_are_refused_by_name(table):
    with pytest.raises(ValueError, match=re.escape(table)):
        lmdb_table_files([table])
