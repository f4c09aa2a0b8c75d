import pytest
from ansible_collections.mailops.submission.plugins.module_utils.login_limits import (
    LimitError,
    counted_login,
    limit_reply,
    limit_table,
    limits_of,
    over_limit_reply,
)

DEFAULTS = {"messages_per_hour": 200, "messages_per_day": 1000, "recipients_per_hour": 500, "recipients_per_day": 2000}


def test_every_login_gets_message_and_recipient_limits_an_hour_and_a_day():
    table = limit_table(DEFAULTS)
    assert limits_of(table, "anyone@runbox.com") == [
        ("messages_per_hour", 200, "m", 3600),
        ("messages_per_day", 1000, "m", 86400),
        ("recipients_per_hour", 500, "r", 3600),
        ("recipients_per_day", 2000, "r", 86400),
    ]


def test_a_login_of_its_own_gets_its_limits_instead_of_the_defaults_never_both():
    table = limit_table(DEFAULTS, {"Big.Sender@Runbox.com": {"messages_per_hour": 5000}})
    assert table["logins"] == {"big.sender@runbox.com": dict(DEFAULTS, messages_per_hour=5000)}
    own = dict((name, value) for name, value, _, _ in limits_of(table, "big.sender@runbox.com"))
    assert own["messages_per_hour"] == 5000 and own["messages_per_day"] == 1000, "a limit left out is the default's"
    assert limits_of(table, "other@runbox.com")[0] == ("messages_per_hour", 200, "m", 3600)


def test_a_table_is_its_own_input_again():
    table = limit_table(dict(DEFAULTS, messages_per_day=0), {"A@runbox.com": {"recipients_per_day": 7}})
    assert limit_table(table["default"], table["logins"]) == table


def test_a_limit_of_zero_is_not_counted():
    table = limit_table(
        dict(DEFAULTS, messages_per_day=0, recipients_per_day=0), {"a@runbox.com": {"messages_per_hour": 0}}
    )
    assert [name for name, *_ in limits_of(table, "a@runbox.com")] == ["recipients_per_hour"]
    assert [name for name, *_ in limits_of(table, "b@runbox.com")] == ["messages_per_hour", "recipients_per_hour"]


def test_the_reply_names_the_limit_and_asks_to_try_again():
    assert limit_reply("messages_per_hour", 20) == (
        "450 4.7.1 This login has reached its limit of 20 messages an hour - try again later"
    )
    assert "limit of 7 recipients a day" in limit_reply("recipients_per_day", 7)
    assert over_limit_reply("recipients_per_hour", 5).startswith(
        "550 5.7.1 This message has more recipients than this login's limit of 5 recipients an hour"
    )


def test_a_login_is_counted_by_its_canonical_form():
    table = limit_table(DEFAULTS, {"Big@Bücher.example": {"messages_per_hour": 7}})
    assert limits_of(table, "big@xn--bcher-kva.example")[0][1] == 7
    assert limits_of(table, "BIG@bücher.example")[0][1] == 7
    assert counted_login("not a login") == "not a login"


@pytest.mark.parametrize(
    ("defaults", "per_login", "message"),
    [
        (dict(DEFAULTS, messages_per_hour=-1), {}, "default limits: messages_per_hour must be a whole number"),
        (
            dict(DEFAULTS, messages_per_day="lots"),
            {},
            "messages_per_day must be a whole number (0: not counted), not 'lots'",
        ),
        ({"messages_per_hour": 1}, {}, "default limits: messages_per_day is missing"),
        (DEFAULTS, {"not a login": {}}, "per-login limits: 'not a login' is not a login"),
        (DEFAULTS, {"a@runbox.com": {"mails": 3}}, "per-login limits of a@runbox.com: unknown limit 'mails'"),
        (DEFAULTS, {"a@runbox.com": {}, "A@runbox.com": {}}, "per-login limits: 'A@runbox.com' is listed twice"),
        (DEFAULTS, {"a@runbox.com": 5}, "per-login limits of a@runbox.com: must be a mapping"),
        (DEFAULTS, ["a@runbox.com"], "per-login limits: must be a mapping of logins to limits"),
    ],
)
def test_a_bad_limit_or_login_is_named(defaults, per_login, message):
    with pytest.raises(LimitError) as error:
        limit_table(defaults, per_login)
    assert message in str(error.value)
