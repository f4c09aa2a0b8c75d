"""The verdict, against real lmdb tables (postmap's) and the real store's socketmap."""

import os
import socket
import threading

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.sender_lookup import union
from from_check.check import ACCEPT, FromCheck
from from_check.tables import LmdbTable, SocketmapTable, TableError

ALICE, BOB, CAROL = "alice@runbox.com", "bob@hosted.example", "carol@runbox.com"


def checker(tables, store_socket=None, send_as_anyone=()):
    config = {"lmdb_tables": tables, "store_socket": store_socket, "send_as_anyone": list(send_as_anyone)}
    return FromCheck.from_config(config)


# (login, From header, accepted?)
MATRIX = [
    (ALICE, "Alice <alice@runbox.com>", True),
    (ALICE, "alice+lists@runbox.com", True),
    (ALICE, "ALICE@Runbox.Com", True),
    (ALICE, "a.liddell@runbox.com", True),
    (ALICE, "shared@runbox.com", True),
    (CAROL, "shared@runbox.com", True),
    (ALICE, "alice.inventory@gmail.example", True),
    (ALICE, "alice.store@gmail.example", True),
    (ALICE, "=?utf-8?q?Alice?= <alice@runbox.com>", True),
    (BOB, "anything@hosted.example", True),
    (BOB, "Bob <BOB+x@HOSTED.example>", True),
    (ALICE, "ceo@bank.example", False),
    (ALICE, '"alice@runbox.com" <ceo@bank.example>', False),
    (ALICE, "carol@runbox.com", False),
    (ALICE, "anyone@hosted.example", False),
    (ALICE, "alice@runbox.com.evil.example", False),
    (ALICE, "alice@runb0x.com", False),
    (BOB, "alice.store@gmail.example", False),
    (CAROL, "alice.inventory@gmail.example", False),
    (ALICE, "postmaster@runbox.com", False),
]


def test_the_matrix_has_both_outcomes():
    assert {accepted for _, _, accepted in MATRIX} == {True, False}


@pytest.mark.parametrize(("login", "header", "accepted"), MATRIX)
def test_a_login_may_show_only_its_own_addresses(with_store, login, header, accepted):
    verdict = with_store.verdict(login, {"from": [header]})
    assert verdict.action == ("accept" if accepted else "refuse"), verdict
    if not accepted:
        assert "5.7.1" not in verdict.text
        assert "<" in verdict.text and login in verdict.text


def test_the_refusal_names_the_header_address(tables):
    verdict = checker(tables).verdict(ALICE, {"from": ['"Alice" <ceo@bank.example>']})
    assert verdict.text == f"the From header's address <ceo@bank.example> is not one that {ALICE} may send as"


def test_a_login_that_may_send_as_anyone_passes(tables):
    check = checker(tables, send_as_anyone=["Lists@runbox.com"])
    assert check.verdict("lists@runbox.com", {"from": ["ceo@bank.example"]}).action == "accept"
    assert check.verdict(ALICE, {"from": ["ceo@bank.example"]}).action == "refuse"


def test_no_login_is_refused(tables):
    assert checker(tables).verdict(None, {"from": ["alice@runbox.com"]}).action == "refuse"


def test_a_store_that_cannot_answer_defers_only_what_the_tables_lack(tables, tmp_path):
    check = checker(tables, str(tmp_path / "no-such.sock"))
    assert check.verdict(ALICE, {"from": ["alice@runbox.com"]}).action == "accept"
    verdict = check.verdict(ALICE, {"from": ["alice.store@gmail.example"]})
    assert verdict.action == "defer"
    assert "no-such.sock" not in verdict.text and "no-such.sock" in verdict.detail


def test_a_store_that_cannot_be_read_defers(with_store, store):
    assert with_store.verdict(ALICE, {"from": ["alice.store@gmail.example"]}).action == "accept"
    store.close()
    os.rename(store.path, store.path + ".moved")
    assert with_store.verdict(ALICE, {"from": ["alice.store@gmail.example"]}).action == "defer"


def test_a_missing_table_defers(tables, tmp_path):
    check = checker([tables[0], str(tmp_path / "gone.lmdb")])
    assert check.verdict(ALICE, {"from": ["alice@runbox.com"]}).action == "defer"


def test_a_rebuilt_table_is_read_again(tables, build_table):
    check = checker(tables)
    assert check.verdict(ALICE, {"from": ["new.alias@runbox.com"]}).action == "refuse"
    rebuilt = build_table("rebuilt", {"new.alias@runbox.com": ALICE})
    os.replace(rebuilt, tables[0])
    assert check.verdict(ALICE, {"from": ["new.alias@runbox.com"]}).action == "accept"


def test_the_first_map_holding_a_key_decides(tables, store_socket, validate):
    """As smtpd_sender_login_maps: the store is asked only for keys the tables lack."""
    validate("alice.inventory@gmail.example", CAROL)
    maps = [union(*(LmdbTable(path) for path in tables)), SocketmapTable(store_socket, "senders")]
    check = FromCheck(maps)
    assert check.verdict(ALICE, {"from": ["alice.inventory@gmail.example"]}).action == "accept"
    assert check.verdict(CAROL, {"from": ["alice.inventory@gmail.example"]}).action == "refuse"


def test_a_store_that_does_not_answer_is_asked_once_and_then_left_alone(tmp_path):
    """A question the store does not answer in time fails without a second try,
    and the next questions fail at once for a while: a hung store holds the
    lookup threads for one timeout, not for every message that needs it."""
    path = str(tmp_path / "hung.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(16)
    questions = []

    def take():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            questions.append(connection.recv(4096))

    threading.Thread(target=take, daemon=True).start()
    try:
        table = SocketmapTable(path, "senders", timeout=0.3)
        with pytest.raises(TableError, match=r"did not answer within 0\.3 s"):
            table("alice.ext@gmail.example")
        with pytest.raises(TableError, match=r"did not answer in time; asked again within 0\.3 s"):
            table("bob.ext@gmail.example")
        assert [question.split(b":", 1)[1] for question in questions] == [b"senders alice.ext@gmail.example,"]
    finally:
        listener.close()


# The rows whose first key (the address itself) the lmdb tables hold for the login.
AT_ONCE = {
    (ALICE, "Alice <alice@runbox.com>"),
    (ALICE, "ALICE@Runbox.Com"),
    (ALICE, "a.liddell@runbox.com"),
    (ALICE, "=?utf-8?q?Alice?= <alice@runbox.com>"),
    (ALICE, "shared@runbox.com"),
    (CAROL, "shared@runbox.com"),
    (ALICE, "alice.inventory@gmail.example"),
}


@pytest.mark.parametrize(("login", "header", "accepted"), MATRIX)
def test_judging_at_once_agrees_with_the_full_judgment_or_leaves_it_to_it(with_store, login, header, accepted):
    """The milter's readers' thread judges only what the lmdb tables decide at
    the address's first key, and only to accept; everything else (a refusal, a
    key further down, the store) goes to judge(), in the lookup threads."""
    read = with_store.read(login, {"from": [header]})
    if not isinstance(read, list):  # refused on reading, as the milter does before any table
        assert not accepted and read.action == "refuse", read
        return
    at_once = with_store.judge_at_once(login, read)
    if (login, header) in AT_ONCE:
        assert at_once == with_store.judge(login, read) == ACCEPT
    else:
        assert at_once is None, (login, header, at_once)
    judged = with_store.read_judged(login, {"from": [header]})
    assert judged == (read if at_once is None else at_once)


def test_an_own_address_is_judged_at_once_and_the_store_is_not_asked(tables, tmp_path):
    check = checker(tables, store_socket=str(tmp_path / "no-store.sock"))
    assert check.read_judged(ALICE, {"from": ["Alice <alice@runbox.com>"]}) == ACCEPT
    # The store holds this one, and it cannot answer: left to judge(), which defers.
    read = check.read_judged(ALICE, {"from": ["alice.store@gmail.example"]})
    assert read == [("From", "alice.store@gmail.example")]
    assert check.judge(ALICE, read).action == "defer"
    # Every author address counts: an own From with someone else's Sender is judge()'s.
    both = {"from": ["alice@runbox.com"], "sender": ["carol@runbox.com"]}
    read = check.read_judged(ALICE, both)
    assert isinstance(read, list) and check.judge(ALICE, read).action == "refuse"
    # The fleet's database is never judged at once: it is not in the milter's process.
    assert FromCheck([lambda key: ALICE]).judge_at_once(ALICE, [("From", ALICE)]) is None


def test_a_table_fault_while_judging_at_once_is_left_to_judge_which_defers(tables):
    check = checker(tables)

    def broken(key):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a damaged value")

    check.maps[0] = broken
    read = check.read_judged(ALICE, {"from": [ALICE]})
    assert read == [("From", ALICE)], "a fault while judging at once was taken for the reader's"
    # judge() meets the fault again and raises it, which the milter answers with 451 (Judge.verdict).
    with pytest.raises(UnicodeDecodeError):
        check.judge(ALICE, read)
