"""sender_allowlist with store: the validation service's SQLite store, as the service creates it."""

import sqlite3
import subprocess

import pytest
from allowlist_harness import module_command, module_result
from sender_validation.store import Store

ALICE = "alice@runbox.com"
BOB = "bob@hosted.example"
DAY = 86400


@pytest.fixture
def store(tmp_path):
    """A store as the service leaves it, with one address alice validated by link."""
    path = tmp_path / "senders.sqlite"
    service = Store(str(path))
    service.migrate()
    token = service.request("alice.user@gmail.example", ALICE, "192.0.2.1", now=1000, ttl=DAY)
    service.confirm(token, ALICE, now=1001)
    service.close()
    return path


def run(tmp_path, check=False, diff=False, **params):
    cmd, env = module_command(params, tmp_path, check, diff)
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False, timeout=120)
    return module_result(proc.stdout, proc.stderr)


def rows(path):
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT sender, login, source FROM validated_senders"))


def entries(*pairs, state="present"):
    return [{"sender": sender, "login": login, "state": state} for sender, login in pairs]


USER_ROW = ("alice.user@gmail.example", ALICE, "user")


def test_inventory_senders_are_seeded_once(store, tmp_path):
    first = run(tmp_path, store=str(store), entries=entries(("Alice.Ext@Gmail.Example", ALICE)))
    assert (first["changed"], first["added"], first["pairs"]) == (True, 1, 2), first
    assert rows(store) == [("alice.ext@gmail.example", ALICE, "inventory"), USER_ROW]
    again = run(tmp_path, store=str(store), entries=entries(("alice.ext@gmail.example", ALICE)))
    assert (again["changed"], again["added"], again["removed"]) == (False, 0, 0), again


def test_exclusive_replaces_the_inventorys_pairs_and_keeps_the_users(store, tmp_path):
    run(tmp_path, store=str(store), entries=entries(("old@gmail.example", ALICE), ("keep@gmail.example", BOB)))
    result = run(tmp_path, store=str(store), entries=entries(("keep@gmail.example", BOB)), exclusive=True)
    assert (result["added"], result["removed"], result["pairs"]) == (0, 1, 2), result
    assert rows(store) == [USER_ROW, ("keep@gmail.example", BOB, "inventory")]


def test_an_inventory_entry_for_a_pair_a_user_validated_changes_nothing(store, tmp_path):
    result = run(tmp_path, store=str(store), entries=entries(("alice.user@gmail.example", ALICE)), exclusive=True)
    assert result["changed"] is False, result
    assert rows(store) == [USER_ROW]


def test_an_absent_entry_removes_what_a_user_validated(store, tmp_path):
    result = run(tmp_path, store=str(store), entries=[{"sender": "alice.user@gmail.example", "state": "absent"}])
    assert (result["changed"], result["removed"], result["pairs"]) == (True, 1, 0), result
    assert rows(store) == []


def test_a_removed_accounts_pairs_go_with_it_the_users_included(store, tmp_path):
    run(tmp_path, store=str(store), entries=entries(("bob.ext@gmail.example", BOB)))
    # alice's account is gone: her validated address must not pass to a later alice.
    result = run(tmp_path, store=str(store), entries=entries(("bob.ext@gmail.example", BOB)), logins=[BOB.upper()])
    assert (result["changed"], result["removed"], result["pairs"]) == (True, 1, 1), result
    assert rows(store) == [("bob.ext@gmail.example", BOB, "inventory")]
    again = run(tmp_path, store=str(store), entries=entries(("bob.ext@gmail.example", BOB)), logins=[BOB])
    assert again["changed"] is False, again


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"entries": entries(("x@gmail.example", BOB))},
            "entries[0] (sender 'x@gmail.example'): login 'bob@hosted.example' is not among logins",
        ),
        ({"logins": [ALICE, "not a login"]}, "logins[1] ('not a login')"),
    ],
)
def test_logins_that_do_not_cover_the_entries_are_refused_and_nothing_changes(store, tmp_path, params, message):
    result = run(tmp_path, store=str(store), **dict({"entries": [], "logins": [ALICE]}, **params))
    assert result.get("failed") and message in result["msg"], result
    assert rows(store) == [USER_ROW]


def test_check_mode_reports_and_diffs_without_writing(store, tmp_path):
    params = {"store": str(store), "entries": entries(("new@gmail.example", BOB)), "exclusive": True}
    result = run(tmp_path, check=True, diff=True, **params)
    assert (result["changed"], result["added"], result["removed"]) == (True, 1, 0), result
    assert result["diff"]["after"] == f"new@gmail.example {BOB}\n"
    assert result["diff"]["before"] == ""
    assert rows(store) == [USER_ROW]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"entries": entries(("@gmail.example", ALICE))}, "'@gmail.example'): the store holds addresses"),
        ({"entries": entries(("ok@gmail.example", ALICE), ("bad address@x.example", ALICE))}, "entries[1]"),
    ],
)
def test_a_bad_entry_is_named_and_nothing_is_written(store, tmp_path, params, message):
    result = run(tmp_path, store=str(store), **params)
    assert result.get("failed") and message in result["msg"], result
    assert rows(store) == [USER_ROW]


def test_a_store_the_service_has_not_created_is_refused_by_name(tmp_path):
    missing = tmp_path / "nowhere.sqlite"
    result = run(tmp_path, store=str(missing), entries=entries(("a@gmail.example", ALICE)))
    assert result.get("failed") and f"store {str(missing)!r} does not exist" in result["msg"], result
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    result = run(tmp_path, store=str(empty), entries=entries(("a@gmail.example", ALICE)))
    assert result.get("failed") and str(empty) in result["msg"], result


def test_path_and_store_are_one_or_the_other(store, tmp_path):
    result = run(tmp_path, store=str(store), path=str(tmp_path / "t"))
    assert result.get("failed") and "mutually exclusive" in result["msg"], result
    result = run(tmp_path, entries=[])
    assert result.get("failed") and "one of the following is required" in result["msg"], result
