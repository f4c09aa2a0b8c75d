"""The author headers as the milter reads them: one plain mailbox each,
whatever dresses it, and nothing in the dressing that shows another address."""

import pytest
from from_check import header_from
from from_check.header_from import MAX_LENGTH, MAX_RESENT, FromError, author_addresses, header_mailbox


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("alice@runbox.com", "alice@runbox.com"),
        ("Alice <alice@runbox.com>", "alice@runbox.com"),
        ('"Liddell, Alice" <alice@runbox.com>', "alice@runbox.com"),
        # A display name or comment may repeat the address, in any case.
        ('"alice@runbox.com" <alice@runbox.com>', "alice@runbox.com"),
        ('"Alice@Runbox.com." <alice@runbox.com>', "alice@runbox.com"),
        ("alice@runbox.com (alice@runbox.com)", "alice@runbox.com"),
        ("Alice (at home) <alice@runbox.com>", "alice@runbox.com"),
        ("=?utf-8?q?Alice_Liddell?= <alice@runbox.com>", "alice@runbox.com"),
        ("Alice\r\n <alice@runbox.com>", "alice@runbox.com"),
        ("Alice <alice@RUNBOX.COM>", "alice@runbox.com"),
        ("Ålice <alice+news@runbox.com>", "alice+news@runbox.com"),
    ],
)
def test_the_address_judged_is_the_mailbox_not_its_dressing(value, address):
    assert header_mailbox([value]) == address


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([], "no From header"),
        (["alice@runbox.com", "alice@runbox.com"], "2 From headers"),
        (["alice@runbox.com, bob@hosted.example"], "2 mailboxes"),
        (["Alice <alice@runbox.com>, <ceo@bank.example>"], "2 mailboxes"),
        (["=?utf-8?q?ceo=40bank.example?="], "cannot be read"),
        (["Alice <alice@runbox.com"], "cannot be read"),
        (["team: alice@runbox.com;"], "a group"),
        (["undisclosed-recipients:;"], "a group"),
        (["<>"], "cannot be read"),
        (["alice"], "cannot be read"),
        (["<@relay.example:alice@runbox.com>"], "cannot be read"),
        (["a@b@c.example"], "cannot be read"),
        (["alice@runbox.com\x00ceo@bank.example"], "control characters"),
        # What a recipient's client shows must be the address judged (issue 21).
        (['"alice+ceo@victim.example"@runbox.com'], "quoted local part"),
        (['"alice"@runbox.com'], "quoted local part"),
        (["alice@=?utf-8?q?runbox.com?="], "encoded word"),
        (['"ceo@victim.example" <alice@runbox.com>'], "shows 'ceo@victim.example'"),
        (['"alice@runbox.com" <ceo@bank.example>'], "shows 'alice@runbox.com'"),
        (["=?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?= <alice@runbox.com>"], "shows 'ceo@bank.example'"),
        (["alice@runbox.com (ceo@bank.example)"], "shows 'ceo@bank.example'"),
        (["Alice <alice(ceo@bank.example)@runbox.com>"], "shows 'ceo@bank.example'"),
        (["=?utf-8?q?alice?=@runbox.com"], "cannot be read|encoded word"),
        ([f"Alice <alice@runbox.com> ({'x' * MAX_LENGTH})"], f"{MAX_LENGTH + 27} characters long"),
    ],
)
def test_a_header_that_is_not_one_mailbox_is_refused_with_a_reason(values, reason):
    with pytest.raises(FromError, match=reason):
        header_mailbox(values)


def test_a_deployment_may_let_a_display_name_show_another_address():
    assert header_mailbox(['"ceo@victim.example" <alice@runbox.com>'], display_addresses=True) == "alice@runbox.com"
    with pytest.raises(FromError, match="quoted local part"):
        header_mailbox(['"alice+ceo@victim.example"@runbox.com'], display_addresses=True)


def test_sender_and_resent_headers_are_read_by_the_same_rule():
    headers = {
        "from": ["Alice <alice@runbox.com>"],
        "sender": ["a.liddell@runbox.com"],
        "resent-from": ["alice+fwd@runbox.com", "Alice <alice@runbox.com>"],
        "resent-sender": ["bob@hosted.example"],
    }
    assert author_addresses(headers) == [
        ("From", "alice@runbox.com"),
        ("Sender", "a.liddell@runbox.com"),
        ("Resent-From", "alice+fwd@runbox.com"),
        ("Resent-From", "alice@runbox.com"),
        ("Resent-Sender", "bob@hosted.example"),
    ]
    with pytest.raises(FromError, match="2 Sender headers"):
        author_addresses({"from": ["alice@runbox.com"], "sender": ["alice@runbox.com", "alice@runbox.com"]})
    with pytest.raises(FromError, match=r"the Sender header's display name or comment shows 'ceo@bank\.example'"):
        author_addresses({"from": ["alice@runbox.com"], "sender": ['"ceo@bank.example" <alice@runbox.com>']})
    with pytest.raises(FromError, match="the Resent-From header holds 2 mailboxes"):
        author_addresses({"from": ["alice@runbox.com"], "resent-from": ["alice@runbox.com, ceo@bank.example"]})
    with pytest.raises(FromError, match="no From header"):
        author_addresses({"sender": ["alice@runbox.com"]})


def test_more_resent_headers_than_are_read_refuse_the_message_unread(monkeypatch):
    """Each author header is bounded by MAX_LENGTH and their number too: 200
    Resent-From headers of 975 characters took 4 s to read."""
    resent = ["Alice <alice@runbox.com>"] * 3
    headers = {"from": ["alice@runbox.com"], "resent-from": resent, "resent-sender": resent[:2]}
    assert len(author_addresses(headers)) == 1 + MAX_RESENT
    parsed = []
    monkeypatch.setattr(header_from, "_read_mailbox", lambda *args: parsed.append(args))
    headers["resent-sender"] = resent
    with pytest.raises(FromError, match=f"more Resent-From and Resent-Sender headers than the {MAX_RESENT} read"):
        author_addresses(headers)
    assert parsed == [], "a header was read although the message is refused"


def test_a_padded_header_is_read_and_kept_by_its_unfolded_value():
    """100 kB of spaces after the address: read, and kept as the address alone
    (4,096 such values once kept 400 MB)."""
    header_from._read_mailbox.cache_clear()
    padded = "alice@runbox.com" + " " * 100000
    assert author_addresses({"from": [padded]}) == [("From", "alice@runbox.com")]
    assert author_addresses({"from": ["alice@runbox.com"]}) == [("From", "alice@runbox.com")]
    info = header_from._read_mailbox.cache_info()
    assert (info.currsize, info.hits) == (1, 1), info


@pytest.mark.parametrize("value", ['"' * 100000, "(c)" * 30000, '"' * 20000, "x" * 100000])
def test_a_header_past_the_line_limit_is_refused_unread(value, monkeypatch):
    """Python's parser takes seconds on 20 kB of some inputs (8.6 s of quotes):
    such a header is refused by its length, before the parser sees it."""

    def parser(*args):
        raise AssertionError("the parser was given a header past the limit")

    monkeypatch.setattr(header_from, "_REGISTRY", parser)
    with pytest.raises(FromError, match=f"{len(value)} characters long; at most 998 are read"):
        header_mailbox([value])


def test_a_header_at_the_line_limit_is_read():
    value = f"Alice <alice@runbox.com> ({'x' * (MAX_LENGTH - 27)})"
    assert len(value) == MAX_LENGTH
    assert header_mailbox([value]) == "alice@runbox.com"
