"""The From header as the milter reads it: one mailbox, whatever dresses it."""

import pytest
from from_check.header_from import FromError, header_mailbox


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("alice@runbox.com", "alice@runbox.com"),
        ("Alice <alice@runbox.com>", "alice@runbox.com"),
        ('"Liddell, Alice" <alice@runbox.com>', "alice@runbox.com"),
        # The display name is not the address, whatever it looks like.
        ('"ceo@bank.example" <alice@runbox.com>', "alice@runbox.com"),
        ('"alice@runbox.com" <ceo@bank.example>', "ceo@bank.example"),
        ("=?utf-8?q?Alice_Liddell?= <alice@runbox.com>", "alice@runbox.com"),
        ("=?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?= <alice@runbox.com>", "alice@runbox.com"),
        ("alice@runbox.com (ceo@bank.example)", "alice@runbox.com"),
        ('"alice"@runbox.com', "alice@runbox.com"),
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
    ],
)
def test_a_header_that_is_not_one_mailbox_is_refused_with_a_reason(values, reason):
    with pytest.raises(FromError, match=reason):
        header_mailbox(values)
