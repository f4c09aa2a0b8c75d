"""The milter protocol as Postfix speaks it (version 6), against the real server
on a socket, with the real tables and store behind it."""

import os
import socket
import struct

import pytest
from from_check.header_from import MAX_RESENT
from milter_client import Postfix, serving

ALICE = "alice@runbox.com"


@pytest.fixture
def milter_socket(tables, store_socket, tmp_path):
    """The milter on the lmdb tables and the store; yields its socket's path."""
    path = str(tmp_path / "milter.sock")
    with serving({"socket": f"unix:{path}", "lmdb_tables": tables, "store_socket": store_socket}):
        yield path


@pytest.fixture
def hung_store(tmp_path):
    """A store socketmap that takes connections and questions and never answers
    (a store stuck on its disk); yields its socket's path."""
    path = str(tmp_path / "hung.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(16)
    yield path
    listener.close()


def test_negotiation_asks_only_for_headers_and_the_login(milter_socket):
    postfix = Postfix(milter_socket)
    command, data = postfix.negotiate()
    assert command == b"O"
    version, actions, steps = struct.unpack("!III", data[:12])
    assert (version, actions) == (6, 0x100)
    # No connect, HELO, MAIL, RCPT, DATA, unknown or body events; no reply to headers.
    assert steps == 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80 | 0x100 | 0x200
    assert data[12:] == struct.pack("!I", 6) + b"{auth_authen} i {mail_addr}\0"


def test_negotiation_without_the_steps_it_needs_is_refused(milter_socket):
    postfix = Postfix(milter_socket)
    postfix.send(b"O", struct.pack("!III", 2, 0x3F, 0x7F))
    with pytest.raises(ConnectionError):
        postfix.receive()


def test_messages_of_one_connection_are_judged_each_on_its_own(milter_socket, validate):
    validate("alice.store@gmail.example", ALICE)
    postfix = Postfix(milter_socket)
    postfix.negotiate()
    assert postfix.message(ALICE, [("Subject", "a"), ("From", "Alice <alice@runbox.com>")]) == (b"a", b"")
    command, text = postfix.message(ALICE, [("From", "ceo@bank.example"), ("To", "x@example.net")])
    assert command == b"y"
    assert (
        text == f"550 5.7.1 the From header's address <ceo@bank.example> is not one that {ALICE} may send as\0".encode()
    )
    assert postfix.message(ALICE, [("From", "alice.store@gmail.example")]) == (b"a", b"")
    # An aborted message leaves nothing behind: the next one has its own headers.
    postfix.send(b"L", b"From\0ceo@bank.example\0")
    postfix.send(b"A")
    assert postfix.message(ALICE, [("From", "alice@runbox.com")]) == (b"a", b"")
    command, text = postfix.message(ALICE, [("From", "alice@runbox.com"), ("From", "alice@runbox.com")])
    assert (command, text) == (b"y", b"550 5.7.1 the message has 2 From headers; one is allowed\0")
    command, text = postfix.message(None, [("From", "alice@runbox.com")])
    assert command == b"y" and text.startswith(b"550 5.7.1 ")


def test_a_store_that_cannot_answer_gives_451(milter_socket, store):
    postfix = Postfix(milter_socket)
    postfix.negotiate()
    store.close()
    os.rename(store.path, store.path + ".moved")
    command, text = postfix.message(ALICE, [("From", "alice.store@gmail.example")])
    assert (command, text) == (b"y", b"451 4.3.0 the sender tables cannot be read now; try again later\0")
    assert postfix.message(ALICE, [("From", "alice@runbox.com")]) == (b"a", b"")


def test_8bit_headers_utf8_is_read_anything_else_refused(milter_socket):
    """SMTPUTF8 clients write UTF-8 display names (RFC 6532); bytes that are not
    UTF-8 cannot be read one way only, and are refused, with no harm to the milter."""
    postfix = Postfix(milter_socket)
    postfix.negotiate()
    assert postfix.message(ALICE, [("From", "Jörg <alice@runbox.com>")]) == (b"a", b"")
    postfix.send(b"L", b"From\0J\xf6rg <alice@runbox.com>\0")
    postfix.send(b"D", b"N{auth_authen}\0alice@runbox.com\0")
    postfix.send(b"N")
    command, text = postfix.receive()
    assert command == b"y" and text.startswith(b"550 5.7.1 the From header cannot be read")
    assert postfix.message(ALICE, [("From", "alice@runbox.com")]) == (b"a", b"")


def test_a_header_as_long_as_postfix_allows_is_read(milter_socket):
    """Postfix passes a header whole, up to header_size_limit (100 kB): a long To
    list must not cost the message its check."""
    postfix = Postfix(milter_socket)
    postfix.negotiate()
    recipients = ", ".join(f"<user{n}@example.net>" for n in range(5000))
    assert len(recipients) > 100000
    headers = [("To", recipients), ("From", "alice@runbox.com")]
    assert postfix.message(ALICE, headers) == (b"a", b"")


def test_long_from_headers_are_refused_at_once_and_hold_no_one_else(milter_socket):
    """Issue 21: a long From header stalled the milter for every connection (8.6 s
    of parsing for 20 kB of quotes, minutes at 100 kB). Past RFC 5322's line limit
    it is refused unread, and another client's message is answered meanwhile."""
    attackers = [Postfix(milter_socket, timeout=2) for _ in range(3)]
    honest = Postfix(milter_socket, timeout=2)
    for postfix in [*attackers, honest]:
        postfix.negotiate()
    for postfix, value in zip(attackers, ["(c)" * 30000, '"' * 20000, "a" * 99000 + "@runbox.com"], strict=True):
        postfix.headers(ALICE, [("From", value)])
    assert honest.message(ALICE, [("From", "Alice <alice@runbox.com>")]) == (b"a", b"")
    for postfix, length in zip(attackers, [90000, 20000, 99011], strict=True):
        command, text = postfix.receive()
        assert command == b"y"
        assert text == f"550 5.7.1 the From header is {length} characters long; at most 998 are read\0".encode()
    # Sender and Resent-From are read by the same rule.
    command, text = honest.message(ALICE, [("From", ALICE), ("Sender", '"' * 20000)])
    assert (command, text[:38]) == (b"y", b"550 5.7.1 the Sender header is 20000 c")


def test_many_resent_headers_are_refused_unread_and_hold_no_one_else(milter_socket):
    """200 Resent-From headers of 975 characters each took 4 s to read on one of
    the two reading threads; past MAX_RESENT the message is refused unread."""
    attackers = [Postfix(milter_socket, timeout=2) for _ in range(3)]
    honest = Postfix(milter_socket, timeout=2)
    for postfix in [*attackers, honest]:
        postfix.negotiate()
    resent = [("Resent-From", "(c)" * 318 + f" <{ALICE}>")] * 200
    for postfix in attackers:
        postfix.headers(ALICE, [("From", ALICE), *resent])
    assert honest.message(ALICE, [("From", "Alice <alice@runbox.com>")]) == (b"a", b"")
    for postfix in attackers:
        command, text = postfix.receive()
        refusal = f"550 5.7.1 the message has more Resent-From and Resent-Sender headers than the {MAX_RESENT} read"
        assert (command, text) == (b"y", refusal.encode() + b"\0")


def test_a_hung_store_defers_only_the_messages_that_need_it(tables, hung_store, tmp_path):
    """A store (or database) that never answers: the messages whose sender only
    it can judge get 451 at the deadline; those the lmdb tables judge, and the
    logins that may send as anyone, are answered meanwhile."""
    path = str(tmp_path / "milter.sock")
    config = {
        "socket": f"unix:{path}",
        "lmdb_tables": tables,
        "store_socket": hung_store,
        "store_timeout": 60,
        "deadline": 1,
        "send_as_anyone": ["lists@runbox.com"],
    }
    with serving(config):
        waiting = [Postfix(path, timeout=10) for _ in range(3)]
        others = Postfix(path, timeout=10)
        for postfix in [*waiting, others]:
            postfix.negotiate()
        for postfix in waiting:
            postfix.headers(ALICE, [("From", "alice.store@gmail.example")])
        # While three sessions wait on the store:
        assert others.message(ALICE, [("From", "alice@runbox.com")]) == (b"a", b"")
        assert others.message("lists@runbox.com", [("From", "news@bank.example")]) == (b"a", b"")
        command, text = others.message(ALICE, [("From", ALICE), ("Sender", "bob@hosted.example")])
        refusal = f"550 5.7.1 the Sender header's address <bob@hosted.example> is not one that {ALICE} may send as"
        assert (command, text) == (b"y", refusal.encode() + b"\0")
        for postfix in waiting:
            assert postfix.receive() == (b"y", b"451 4.3.0 the From check took too long; try again later\0")
            # The session goes on: its next message is judged on its own.
            assert postfix.message(ALICE, [("From", "a.liddell@runbox.com")]) == (b"a", b"")


def test_a_connection_closed_while_its_verdict_is_pending_harms_no_one(tables, hung_store, tmp_path):
    path = str(tmp_path / "milter.sock")
    config = {"socket": f"unix:{path}", "lmdb_tables": tables, "store_socket": hung_store, "deadline": 1}
    with serving(config):
        leaving = Postfix(path)
        leaving.negotiate()
        leaving.headers(ALICE, [("From", "alice.store@gmail.example")])
        leaving.socket.close()
        staying = Postfix(path)
        staying.negotiate()
        assert staying.message(ALICE, [("From", "alice@runbox.com")]) == (b"a", b"")


def test_local_mail_from_a_listed_sender_shows_only_its_addresses_and_other_local_mail_passes(
    tables, store_socket, tmp_path
):
    """sendmail's mail (Postfix's non_smtpd_milters, a socket of its own) has no
    login: the validation service's no-reply envelope sender may show only
    itself, so a takeover of the service cannot show a user's From; root's
    mail, with another envelope sender, passes."""
    smtp, local = str(tmp_path / "milter.sock"), str(tmp_path / "local.sock")
    no_reply = "no-reply@runbox.com"
    config = {
        "socket": f"unix:{smtp}",
        "local_socket": f"unix:{local}",
        "local_senders": {no_reply: [no_reply]},
        "lmdb_tables": tables,
        "store_socket": store_socket,
    }
    with serving(config):
        postfix = Postfix(local)
        postfix.negotiate()
        assert postfix.message(None, [("From", f"Runbox <{no_reply}>")], no_reply) == (b"a", b"")
        command, text = postfix.message(None, [("From", ALICE)], no_reply)
        refusal = f"550 5.7.1 the From header's address <{ALICE}> is not one that {no_reply} may show"
        assert (command, text) == (b"y", refusal.encode() + b"\0")
        command, text = postfix.message(None, [("From", no_reply), ("Sender", ALICE)], no_reply.upper())
        assert (command, text[:32]) == (b"y", b"550 5.7.1 the Sender header's ad")
        assert postfix.message(None, [("From", "ceo@bank.example")], "root@mta.runbox.com") == (b"a", b"")
        # The SMTP socket still needs a login.
        smtpd = Postfix(smtp)
        smtpd.negotiate()
        command, text = smtpd.message(None, [("From", no_reply)], no_reply)
        assert (command, text[:39]) == (b"y", b"550 5.7.1 the From header is checked fo")
